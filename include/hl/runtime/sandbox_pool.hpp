// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/detail/pool_core.hpp"
#include "hl/runtime/detail/task_cancellation.hpp"
#include "hl/runtime/pool_options.hpp"
#include "hl/runtime/pool_stats.hpp"

namespace hl {

/// Exclusive use of one pooled sandbox until destroyed (or release()d); then the pool restores it to
/// the clean snapshot, on its worker, before anyone else's operation runs there. The lease is the
/// only way to the sandbox: it is move-only and lends no handle, reference or interrupt_handle that
/// could outlive it. Once released or moved from, it is empty: async_call() completes with
/// errc::usage_error (on the handler's executor, else the lease's) and never reaches the sandbox,
/// last_error() is empty.
class pool_lease {
public:
    using executor_type = asio::any_io_executor;

    pool_lease() = default;
    pool_lease(const pool_lease&) = delete;
    pool_lease& operator=(const pool_lease&) = delete;
    pool_lease(pool_lease&& other) noexcept;
    pool_lease& operator=(pool_lease&& other) noexcept;
    ~pool_lease();

    /// As async_sandbox::async_call(), on the leased sandbox: `async_call<R>(name, args..., token)`.
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token);
    /// As async_sandbox::async_call_for().
    template <class R = void, class Rep, class Period, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                        ArgsAndToken&&... args_and_token);
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(const call_limits& limits, std::string_view name, ArgsAndToken&&... args_and_token);

    /// The message of the last call of this lease that failed; never another holder's.
    std::string last_error() const;

    executor_type get_executor() const noexcept { return ex_; }
    /// False once released or moved from.
    explicit operator bool() const noexcept { return state_ != nullptr; }

    /// Gives the sandbox back to the pool; a no-op on an empty lease. Nothing of this lease reaches
    /// the sandbox afterwards: a call of it that is running is killed (it completes with
    /// errc::cancelled), and one that has not started yet (still queued, or made with a lazy token
    /// such as use_awaitable and awaited only now) completes with errc::usage_error.
    void release();

    /// For the library (sandbox_pool): a lease on `state` as its holder is now.
    pool_lease(std::shared_ptr<detail::pool_core> pool, std::shared_ptr<detail::sandbox_state> state,
               executor_type ex);

private:
    template <class R, class... ArgsAndToken>
    auto call_with(std::string_view name, const call_limits& limits, ArgsAndToken&&... args_and_token);

    std::shared_ptr<detail::pool_core> pool_;
    std::shared_ptr<detail::sandbox_state> state_;
    executor_type ex_;
    std::uint64_t epoch_ = 0;  // the holder this lease is: its calls run only while it holds the sandbox
};

/// Sandboxes for one task each: built once from a template (guest, configuration, host functions),
/// snapshotted clean, and created from that snapshot (sharing its pages copy-on-write) in the
/// background, between min_size and max_size of them, spread over the workers of a runtime
/// (pool_options::runtime). Every task gets a sandbox exactly as clean as the snapshot: on release
/// a restore is queued on the sandbox's worker, behind what that worker is doing (so the task's
/// completion runs first) and ahead of anything the next holder does there. A poisoned sandbox is
/// simply restored; if a restore fails, the sandbox refuses calls (errc::poisoned) and is replaced
/// once idle or released. An acquire made on a worker prefers an idle sandbox of that worker: a
/// task awaited there then runs its guest without a thread switch.
///
/// Acquiring is asynchronous, FIFO-fair, bounded (pool_options::max_waiters, then errc::pool_busy),
/// cancellable (asio::error::operation_aborted: a cancelled waiter leaves the queue, and a sandbox
/// handed to it meanwhile goes back to the pool) and may time out (pool_options::acquire_timeout:
/// errc::timed_out).
///
/// Move-only. A moved-from or default-constructed pool is empty: its operations complete with
/// errc::usage_error (on the handler's executor, else the pool's; with neither, they throw
/// hl::error(errc::usage_error)), close() does nothing and stats() is all zeros.
///
/// Thread-safety: operations may be started from any thread; completions run on the handler's
/// associated executor (by default the pool's).
class sandbox_pool {
public:
    using executor_type = asio::any_io_executor;

    sandbox_pool() = default;
    sandbox_pool(const sandbox_pool&) = delete;
    sandbox_pool& operator=(const sandbox_pool&) = delete;
    /// `other` is left empty, with its executor.
    sandbox_pool(sandbox_pool&& other) noexcept;
    sandbox_pool& operator=(sandbox_pool&& other) noexcept;
    ~sandbox_pool();

    /// Creates the template sandbox from `guest`, snapshots it clean, and starts the pool. `bind`
    /// registers host functions and handlers on every pooled sandbox, on its worker, as the pool
    /// creates it. For a pool used from `ex`'s own threads, what runs or destroys `bind` and the
    /// host functions it registers counts as outstanding work of `ex`: once `ex`'s run() has
    /// returned, none of it is under way or to come, even for a pool destroyed while it grew
    /// (after a stop(), the io_context's destruction waits for it, up to a second; see
    /// async_sandbox, "Lifetimes"). Completes with void(std::error_code, sandbox_pool).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                             std::function<void(multi_use_sandbox&)> bind, pool_options options, Token&& token = {});

    /// Starts a pool whose sandboxes are created from `clean` (copy-on-write, no guest initialisation)
    /// and restored to it between tasks: for a state prepared beforehand, such as a script loaded
    /// into an engine (see script_pool). `bind` and the rest are as above. A null `clean` completes
    /// with errc::usage_error. Completes with void(std::error_code, sandbox_pool).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, std::shared_ptr<const snapshot> clean,
                             std::function<void(multi_use_sandbox&)> bind, pool_options options, Token&& token = {});

    /// Waits for a sandbox. Completes with void(std::error_code, pool_lease).
    template <class Token = asio::use_awaitable_t<>>
    auto async_acquire(Token&& token = {});

    /// Acquires a sandbox, calls `name` in it and releases it: `async_call<R>(name, args..., token)`
    /// (default token: asio::use_awaitable), completing with void(std::error_code, R). A
    /// cancellation ends the task whenever it comes: while waiting for a sandbox or being handed
    /// one (asio::error::operation_aborted, the guest never runs), or during the call (as
    /// async_sandbox::async_call()).
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token);
    /// As async_call(), with a deadline for the guest call (not the wait for a sandbox).
    template <class R = void, class Rep, class Period, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                        ArgsAndToken&&... args_and_token);
    /// As async_call(), within `limits` for the guest call (not the wait for a sandbox); zero fields
    /// take the pool's defaults (pool_options::call_limits), and so on (hl::call_limits).
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(const call_limits& limits, std::string_view name, ArgsAndToken&&... args_and_token);

    /// Completes with void(std::error_code) once no sandbox is in use, being recycled or being
    /// created (after close(), once everything has been let go).
    template <class Token = asio::use_awaitable_t<>>
    auto async_drain(Token&& token = {});

    /// Stops handing out sandboxes: waiters complete with asio::error::operation_aborted, new
    /// acquires with errc::pool_closed; sandboxes are dropped as they come back.
    void close();

    pool_stats stats() const;
    /// The executor completions default to; a moved-from pool keeps it, a default-constructed one
    /// has none.
    executor_type get_executor() const noexcept { return ex_; }
    /// False for an empty pool.
    explicit operator bool() const noexcept { return core_ != nullptr; }

private:
    static constexpr const char* empty_message =
        "the sandbox_pool is empty (default-constructed or moved from), and has no executor";

    explicit sandbox_pool(executor_type ex) noexcept;
    explicit sandbox_pool(std::shared_ptr<detail::pool_core> core);

    // A task's cancellation, fed by the handler's cancellation slot; null if it has none.
    template <class Handler>
    static std::shared_ptr<detail::task_cancellation> cancellation_of(Handler& handler);

    template <class R, class... ArgsAndToken>
    auto call_with(std::string_view name, const call_limits& limits, ArgsAndToken&&... args_and_token);

    template <class R, class Token, class... Args>
    auto initiate_pool_call(std::string_view name, const call_limits& limits, Token&& token, const Args&... args);

    std::shared_ptr<detail::pool_core> core_;
    executor_type ex_;
};

}  // namespace hl

#include "hl/runtime/impl/sandbox_pool.hpp"
