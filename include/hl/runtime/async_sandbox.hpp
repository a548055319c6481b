// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "hl/runtime/detail/initiate.hpp"
#include "hl/runtime/diagnostics.hpp"
#include "hl/runtime/runtime.hpp"
#include "hl/sandbox.hpp"

namespace hl {

/// A sandbox that lives on one worker thread of an hl::runtime for its whole life (creation,
/// calls, snapshot, restore and destruction all happen there), driven from Asio. It goes on the
/// worker `ex` belongs to when `ex` is a worker's executor (runtime::get_executor()), otherwise on
/// the next worker of runtime::default_runtime().
///
/// Every operation is an Asio initiating function: its completion runs on the handler's
/// associated executor (by default `ex`), and works with asio::use_awaitable (the default token),
/// asio::experimental::as_tuple, asio::use_future, plain callbacks, and hl::with_diagnostics(),
/// which also delivers the failure's message. A call awaited by a coroutine on the sandbox's own
/// worker runs the guest right there (no thread switch); from anywhere else it is passed to the
/// worker once and completes on the caller's executor once.
///
/// Move-only, as Asio's I/O objects are: a handle is the sandbox, and there is one. A moved-from or
/// default-constructed handle is empty (operator bool is false): its operations complete with
/// errc::usage_error on the handler's executor, or on the executor it kept (a moved-from handle keeps
/// it); with neither, they throw hl::error(errc::usage_error). interrupt_handle() throws that error;
/// last_error() is empty.
///
/// Operations queued on one sandbox run in order. Calls honour per-operation cancellation: one
/// cancelled while queued never runs and completes with asio::error::operation_aborted; one
/// cancelled while running is interrupted (interrupt_handle().kill()) and completes with
/// hl::errc::cancelled, leaving the sandbox poisoned until restored. Destroying the handle kills a
/// running call, completes queued operations with asio::error::operation_aborted, and destroys the
/// sandbox on its worker once the call has unwound.
///
/// Thread-safety: operations may be started from any thread.
///
/// Lifetimes: keep the executor's io_context alive, and running, until every operation on the
/// sandbox has completed (completions are deferred to it); keep the runtime alive longer than its
/// sandboxes. A handle let go on a thread that runs its executor (in a handler or coroutine of
/// it) has its sandbox destroyed on the worker as work of that executor: once its run() has
/// returned, the host functions that `setup` or `bind` registered, and what they capture, are
/// gone (after a stop(), the io_context's destruction waits for that, up to a second). A handle
/// let go elsewhere, and a sandbox whose executor is a runtime worker's, give the application no
/// such moment: what their host functions capture must not need an io_context of the
/// application's that may be destroyed first.
class async_sandbox {
public:
    using executor_type = asio::any_io_executor;

    async_sandbox() = default;
    async_sandbox(const async_sandbox&) = delete;
    async_sandbox& operator=(const async_sandbox&) = delete;
    /// `other` is left empty, with its executor.
    async_sandbox(async_sandbox&& other) noexcept;
    async_sandbox& operator=(async_sandbox&& other) noexcept;
    ~async_sandbox();

    /// Loads `guest`, runs `setup` (register host functions and handlers) and evolves the sandbox,
    /// all on its worker. Completes with void(std::error_code, async_sandbox).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                             std::function<void(uninitialized_sandbox&)> setup, Token&& token = {});

    /// A sandbox mapping `snap` copy-on-write (no guest initialisation), created on its worker;
    /// `bind` registers its host functions and handlers there. Completes with
    /// void(std::error_code, async_sandbox).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create_from(executor_type ex, std::shared_ptr<const snapshot> snap,
                                  std::function<void(multi_use_sandbox&)> bind, Token&& token = {});

    /// Calls the guest function `name`: `async_call<R>(name, args..., token)`; with no token,
    /// asio::use_awaitable. Completes with void(std::error_code, R) (void(std::error_code) for R =
    /// void); the error's message goes to hl::with_diagnostics() and last_error(). Arguments are
    /// copied when the call is made.
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token);

    /// As async_call(), with a deadline: past `timeout` the guest is interrupted and the call
    /// completes with errc::timed_out (the sandbox is then poisoned until restored).
    template <class R = void, class Rep, class Period, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                        ArgsAndToken&&... args_and_token);

    /// As async_call(), within `limits` (hl::call_limits): a deadline (errc::timed_out) and a CPU-time
    /// budget (errc::cpu_budget_exceeded), which counts only while the call runs on the worker: not
    /// while it waits for an asynchronous host function or between slices. Zero fields take the
    /// sandbox's defaults (runtime_options::call_limits, else sandbox_config::call_limits).
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(const call_limits& limits, std::string_view name, ArgsAndToken&&... args_and_token);

    /// Takes a snapshot on the worker. Completes with
    /// void(std::error_code, std::shared_ptr<const snapshot>).
    template <class Token = asio::use_awaitable_t<>>
    auto async_snapshot(Token&& token = {});

    /// Restores `snap` on the worker; once restored, last_error() is empty. Completes with
    /// void(std::error_code).
    template <class Token = asio::use_awaitable_t<>>
    auto async_restore(std::shared_ptr<const snapshot> snap, Token&& token = {});

    /// Stops the running call from any thread (see hl::interrupt_handle). Throws hl::error
    /// (errc::usage_error) on an empty handle.
    hl::interrupt_handle interrupt_handle() const;

    /// The message of the last operation that failed; empty on an empty handle. Shared by everyone
    /// using the sandbox: prefer hl::with_diagnostics(), which is per operation.
    std::string last_error() const;

    /// The executor completions default to; a moved-from handle keeps it, a default-constructed one
    /// has none.
    executor_type get_executor() const noexcept { return ex_; }
    /// False for an empty handle.
    explicit operator bool() const noexcept { return state_ != nullptr; }

private:
    explicit async_sandbox(executor_type ex) noexcept;
    async_sandbox(std::shared_ptr<detail::sandbox_state> state, executor_type ex) noexcept;

    void close() noexcept;

    template <class Make, class Token>
    static auto create_with(executor_type ex, Make make, Token&& token);

    template <class R, class... ArgsAndToken>
    auto call_with(std::string_view name, const call_limits& limits, ArgsAndToken&&... args_and_token);

    std::shared_ptr<detail::sandbox_state> state_;
    executor_type ex_;
};

}  // namespace hl

#include "hl/runtime/impl/async_sandbox.hpp"
