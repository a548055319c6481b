// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/detail/pool_core.hpp"
#include "hl/runtime/detail/task_cancellation.hpp"

namespace hl {

/// Exclusive use of one pooled sandbox until destroyed (or release()d); then the pool restores it to
/// the clean snapshot, off the holder's path, before anyone else gets it. The lease is the only way
/// to the sandbox: it is move-only and lends no handle, reference or interrupt_handle that could
/// outlive it. Once released or moved from, it is empty: async_call() completes with
/// errc::usage_error (on the handler's executor, else the lease's) and never reaches the sandbox,
/// last_error() is empty.
class pool_lease {
public:
    using executor_type = asio::any_io_executor;

    pool_lease() = default;
    pool_lease(const pool_lease&) = delete;
    pool_lease& operator=(const pool_lease&) = delete;
    pool_lease(pool_lease&&) noexcept = default;
    pool_lease& operator=(pool_lease&& other) noexcept {
        if (this != &other) {
            release();
            pool_ = std::move(other.pool_);
            sandbox_ = std::move(other.sandbox_);
            epoch_ = other.epoch_;
        }
        return *this;
    }
    ~pool_lease() {
        try {
            release();
        } catch (...) {
            // Out of memory while recycling: the sandbox is dropped instead of reused.
        }
    }

    /// As async_sandbox::async_call(), on the leased sandbox: `async_call<R>(name, args..., token)`.
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
        return detail::with_token_last(
            [&](auto&& token, const auto&... args) {
                return sandbox_.template async_call_with<R>(name, detail::owned_arguments(args...), nullptr,
                                                            std::forward<decltype(token)>(token), epoch_);
            },
            std::forward<ArgsAndToken>(args_and_token)...);
    }

    /// The message of the last call of this lease that failed; never another holder's.
    std::string last_error() const { return sandbox_.last_error(); }

    executor_type get_executor() const noexcept { return sandbox_.get_executor(); }
    /// False once released or moved from.
    explicit operator bool() const noexcept { return static_cast<bool>(sandbox_); }

    /// Gives the sandbox back to the pool; a no-op on an empty lease. Nothing of this lease reaches
    /// the sandbox afterwards: a call of it that is running is killed (it completes with
    /// errc::cancelled), and one that has not started yet (still queued, or made with a lazy token
    /// such as use_awaitable and awaited only now) completes with errc::usage_error.
    void release() {
        if (pool_ && sandbox_) pool_->release(std::move(sandbox_));
        pool_.reset();
    }

private:
    friend class sandbox_pool;
    pool_lease(std::shared_ptr<detail::pool_core> pool, async_sandbox sandbox)
        : pool_(std::move(pool)), sandbox_(std::move(sandbox)), epoch_(sandbox_.holder_epoch()) {}

    std::shared_ptr<detail::pool_core> pool_;
    async_sandbox sandbox_;
    std::uint64_t epoch_ = 0;  // the holder this lease is: its calls run only while it holds the sandbox
};

/// Sandboxes for one task each: built once from a template (guest, configuration, host functions),
/// snapshotted clean, and created from that snapshot (sharing its pages copy-on-write) in the
/// background, between min_size and max_size of them. Every task gets a sandbox exactly as clean
/// as the snapshot: on release a restore is queued on the sandbox's vCPU thread, ahead of anything
/// the next holder does there, without waking the thread (it runs with the next holder's first
/// operation, in the same wake-up, or within half a millisecond if no one comes). A poisoned
/// sandbox is simply restored; if a restore fails, the sandbox refuses calls (errc::poisoned)
/// and is replaced once idle or released.
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
    sandbox_pool(sandbox_pool&& other) noexcept : core_(std::move(other.core_)), ex_(other.ex_) {}
    sandbox_pool& operator=(sandbox_pool&& other) noexcept {
        if (this != &other) {
            close();
            core_ = std::move(other.core_);
            ex_ = other.ex_;
        }
        return *this;
    }
    ~sandbox_pool() { close(); }

    /// Creates the template sandbox from `guest` (with `bind` applied after evolve), snapshots it
    /// clean, and starts the pool. `bind` registers host functions and handlers on every pooled
    /// sandbox, on its vCPU thread. Completes with void(std::error_code, sandbox_pool).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                             std::function<void(multi_use_sandbox&)> bind, pool_options options, Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code, sandbox_pool)>(
            [](auto handler, executor_type ex, std::filesystem::path guest, sandbox_config config,
               std::function<void(multi_use_sandbox&)> bind, pool_options options) {
                auto done = std::make_shared<detail::completion<decltype(handler)>>(std::move(handler), ex);
                async_sandbox::async_create(
                    ex, std::move(guest), config, {},
                    [done, ex, bind, options](std::error_code ec, async_sandbox tmpl) mutable {
                        if (ec) return done->complete(ec, sandbox_pool(ex));
                        auto holder = std::make_shared<async_sandbox>(std::move(tmpl));
                        holder->async_snapshot([done, ex, bind, options, holder](
                                                   std::error_code ec, std::shared_ptr<const snapshot> clean) mutable {
                            if (ec) return done->complete(ec, sandbox_pool(ex));
                            auto core = std::make_shared<detail::pool_core>(ex, std::move(clean), std::move(bind), options);
                            core->start();
                            done->complete(ec, sandbox_pool(std::move(core)));
                        });
                    });
            },
            token, std::move(ex), std::move(guest), std::move(config), std::move(bind), options);
    }

    /// Waits for a sandbox. Completes with void(std::error_code, pool_lease).
    template <class Token = asio::use_awaitable_t<>>
    auto async_acquire(Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code, pool_lease)>(
            [core = core_, ex = ex_](auto handler) {
                if (!core) return detail::complete_usage_error(std::move(handler), ex, empty_message, pool_lease());
                using H = decltype(handler);
                auto task = cancellation_of(handler);
                struct waiter final : detail::pool_waiter {
                    waiter(H h, std::shared_ptr<detail::pool_core> c, std::shared_ptr<detail::task_cancellation> t)
                        : done(std::move(h), c->executor()), core(std::move(c)), task(std::move(t)) {}
                    void deliver(std::error_code ec, std::optional<async_sandbox> sb) override {
                        // The hand-over: a cancellation that came after the pool chose this waiter
                        // gives the sandbox back, up to the moment the holder would get it.
                        auto lease = sb ? pool_lease(core, std::move(*sb)) : pool_lease();
                        done.complete_with([task = task, ec, lease = std::move(lease)]() mutable {
                            if (lease && task && task->cancelled()) {
                                lease.release();
                                return std::make_tuple(std::error_code(asio::error::operation_aborted), pool_lease());
                            }
                            return std::make_tuple(ec, std::move(lease));
                        });
                    }
                    detail::completion<H> done;
                    std::shared_ptr<detail::pool_core> core;
                    std::shared_ptr<detail::task_cancellation> task;
                };
                core->acquire(std::make_unique<waiter>(std::move(handler), core, task), task);
            },
            token);
    }

    /// Acquires a sandbox, calls `name` in it and releases it: `async_call<R>(name, args..., token)`
    /// (default token: asio::use_awaitable), completing with void(std::error_code, R). A
    /// cancellation ends the task whenever it comes: while waiting for a sandbox or being handed
    /// one (asio::error::operation_aborted, the guest never runs), or during the call (as
    /// async_sandbox::async_call()).
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
        return detail::with_token_last(
            [&](auto&& token, const auto&... args) {
                return initiate_call<R>(name, std::forward<decltype(token)>(token), args...);
            },
            std::forward<ArgsAndToken>(args_and_token)...);
    }

    /// Completes with void(std::error_code) once no sandbox is in use, being recycled or being
    /// created (after close(), once everything has been let go).
    template <class Token = asio::use_awaitable_t<>>
    auto async_drain(Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [core = core_, ex = ex_](auto handler) {
                if (!core) return detail::complete_usage_error(std::move(handler), ex, empty_message);
                auto done = std::make_shared<detail::completion<decltype(handler)>>(std::move(handler), core->executor());
                core->when_drained([done] { done->complete({}); });
            },
            token);
    }

    /// Stops handing out sandboxes: waiters complete with asio::error::operation_aborted, new
    /// acquires with errc::pool_closed; sandboxes are dropped as they come back.
    void close() {
        if (core_) core_->close();
    }

    pool_stats stats() const { return core_ ? core_->stats() : pool_stats{}; }
    /// The executor completions default to; a moved-from pool keeps it, a default-constructed one
    /// has none.
    executor_type get_executor() const noexcept { return ex_; }
    /// False for an empty pool.
    explicit operator bool() const noexcept { return core_ != nullptr; }

private:
    static constexpr const char* empty_message =
        "the sandbox_pool is empty (default-constructed or moved from), and has no executor";

    explicit sandbox_pool(executor_type ex) noexcept : ex_(std::move(ex)) {}
    explicit sandbox_pool(std::shared_ptr<detail::pool_core> core) : core_(std::move(core)), ex_(core_->executor()) {}

    // A task's cancellation, fed by the handler's cancellation slot; null if it has none.
    template <class Handler>
    static std::shared_ptr<detail::task_cancellation> cancellation_of(Handler& handler) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (!slot.is_connected()) return nullptr;
        auto task = std::make_shared<detail::task_cancellation>();
        // Assigned before the task starts: once started it may complete, and clear the slot, on
        // another thread of the executor.
        slot.assign([task](asio::cancellation_type type) {
            if (type != asio::cancellation_type::none) task->cancel();
        });
        return task;
    }

    template <class R, class Token, class... Args>
    auto initiate_call(std::string_view name, Token&& token, const Args&... args) {
        return asio::async_initiate<Token, detail::call_signature<R>>(
            [core = core_, ex = ex_](auto handler, std::string name, detail::owned_arguments args) mutable {
                if (!core) {
                    if constexpr (std::is_void_v<R>) return detail::complete_usage_error(std::move(handler), ex, empty_message);
                    else return detail::complete_usage_error(std::move(handler), ex, empty_message, R{});
                }
                using H = decltype(handler);
                struct call_state {
                    call_state(H h, const asio::any_io_executor& ex) : done(std::move(h), ex) {}
                    detail::completion<H> done;
                    pool_lease lease;
                };
                auto state = std::make_shared<call_state>(std::move(handler), core->executor());
                // One cancellation for the whole task: the acquire, the hand-over and the call each
                // arm it in turn, so that it reaches whichever is under way when it comes.
                auto task = cancellation_of(state->done.handler());
                const auto start = std::chrono::steady_clock::now();
                auto on_lease = [state, core, task, start, name = std::move(name), args = std::move(args)](
                                    std::error_code ec, pool_lease lease) mutable {
                    if (ec) {
                        if constexpr (std::is_void_v<R>) return state->done.complete(ec);
                        else return state->done.complete(ec, R{});
                    }
                    state->lease = std::move(lease);
                    // A task cancelled by now completes with operation_aborted without the guest
                    // running (async_call_with arms `task` before queueing the call).
                    state->lease.sandbox_.template async_call_with<R>(
                        name, std::move(args), task,
                        [state, core, task, start](std::error_code ec, auto... value) mutable {
                            if (task) task->disarm();
                            state->lease.release();
                            core->record_latency(std::chrono::steady_clock::now() - start);
                            state->done.complete(ec, std::move(value)...);
                        },
                        state->lease.epoch_);
                };
                acquire_raw(core, std::move(on_lease), task);
            },
            token, std::string(name), detail::owned_arguments(args...));
    }

    // Acquire with a plain callable, run on the pool's executor.
    template <class F>
    static void acquire_raw(const std::shared_ptr<detail::pool_core>& pool, F f,
                            const std::shared_ptr<detail::task_cancellation>& task) {
        struct waiter final : detail::pool_waiter {
            waiter(F fn, std::shared_ptr<detail::pool_core> c) : fn(std::move(fn)), core(std::move(c)) {}
            void deliver(std::error_code ec, std::optional<async_sandbox> sb) override {
                // A lease at once: if the io_context is destroyed before this runs, the sandbox
                // still goes back to the pool.
                asio::post(core->executor(), [fn = std::move(fn), ec,
                                              lease = sb ? pool_lease(core, std::move(*sb)) : pool_lease()]() mutable {
                    fn(ec, std::move(lease));
                });
            }
            F fn;
            std::shared_ptr<detail::pool_core> core;
        };
        pool->acquire(std::make_unique<waiter>(std::move(f), pool), task);
    }

    std::shared_ptr<detail::pool_core> core_;
    executor_type ex_;
};

}  // namespace hl
