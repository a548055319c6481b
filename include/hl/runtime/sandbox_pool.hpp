// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>

#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/detail/pool_core.hpp"

namespace hl {

/// Exclusive use of one pooled sandbox until destroyed (or release()d); then the pool restores it to
/// the clean snapshot, off the holder's path, before anyone else gets it.
class pool_lease {
public:
    pool_lease() = default;
    pool_lease(pool_lease&&) noexcept = default;
    pool_lease& operator=(pool_lease&& other) noexcept {
        if (this != &other) {
            release();
            pool_ = std::move(other.pool_);
            sandbox_ = std::move(other.sandbox_);
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

    async_sandbox& sandbox() noexcept { return *sandbox_; }
    async_sandbox* operator->() noexcept { return &*sandbox_; }
    explicit operator bool() const noexcept { return sandbox_.has_value(); }

    void release() {
        if (pool_ && sandbox_) pool_->release(std::move(*sandbox_));
        sandbox_.reset();
        pool_.reset();
    }

private:
    friend class sandbox_pool;
    pool_lease(std::shared_ptr<detail::pool_core> pool, async_sandbox sandbox)
        : pool_(std::move(pool)), sandbox_(std::move(sandbox)) {}

    std::shared_ptr<detail::pool_core> pool_;
    std::optional<async_sandbox> sandbox_;
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
/// cancellable (a cancelled waiter leaves the queue: asio::error::operation_aborted) and may time
/// out (pool_options::acquire_timeout: errc::timed_out).
///
/// Thread-safety: operations may be started from any thread; completions run on the handler's
/// associated executor (by default the pool's).
class sandbox_pool {
public:
    sandbox_pool() = default;
    sandbox_pool(sandbox_pool&&) noexcept = default;
    sandbox_pool& operator=(sandbox_pool&& other) noexcept {
        if (this != &other) {
            close();
            core_ = std::move(other.core_);
        }
        return *this;
    }
    ~sandbox_pool() {
        if (core_) core_->close();
    }

    /// Creates the template sandbox from `guest` (with `bind` applied after evolve), snapshots it
    /// clean, and starts the pool. `bind` registers host functions and handlers on every pooled
    /// sandbox, on its vCPU thread. Completes with void(std::error_code, sandbox_pool).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(asio::any_io_executor ex, std::filesystem::path guest, sandbox_config config,
                             std::function<void(multi_use_sandbox&)> bind, pool_options options, Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code, sandbox_pool)>(
            [](auto handler, asio::any_io_executor ex, std::filesystem::path guest, sandbox_config config,
               std::function<void(multi_use_sandbox&)> bind, pool_options options) {
                auto done = std::make_shared<detail::completion<decltype(handler)>>(std::move(handler), ex);
                async_sandbox::async_create(
                    ex, std::move(guest), config, {},
                    [done, ex, bind, options](std::error_code ec, async_sandbox tmpl) mutable {
                        if (ec) return done->complete(ec, sandbox_pool());
                        auto holder = std::make_shared<async_sandbox>(std::move(tmpl));
                        holder->async_snapshot([done, ex, bind, options, holder](
                                                   std::error_code ec, std::shared_ptr<const snapshot> clean) mutable {
                            if (ec) return done->complete(ec, sandbox_pool());
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
            [core = core_](auto handler) {
                using H = decltype(handler);
                auto slot = asio::get_associated_cancellation_slot(handler);
                struct waiter final : detail::pool_waiter {
                    waiter(H h, std::shared_ptr<detail::pool_core> c) : done(std::move(h), c->executor()), core(std::move(c)) {}
                    void deliver(std::error_code ec, std::optional<async_sandbox> sb) override {
                        done.complete(ec, sb ? pool_lease(core, std::move(*sb)) : pool_lease());
                    }
                    detail::completion<H> done;
                    std::shared_ptr<detail::pool_core> core;
                };
                // The slot is assigned before the acquire starts: once started, the acquire may
                // complete, and clear the slot, on another thread of the executor.
                auto pending = slot.is_connected() ? std::make_shared<detail::pending_acquire>() : nullptr;
                if (pending) {
                    slot.assign([weak = std::weak_ptr<detail::pool_core>(core), pending](asio::cancellation_type type) {
                        if (type == asio::cancellation_type::none) return;
                        if (auto c = weak.lock()) pending->cancel(*c);
                    });
                }
                const std::uint64_t id = core->acquire(std::make_unique<waiter>(std::move(handler), core));
                if (pending) pending->started(*core, id);
            },
            token);
    }

    /// Acquires a sandbox, calls `name` in it and releases it: `async_call<R>(name, args..., token)`
    /// (default token: asio::use_awaitable), completing with void(std::error_code, R). Cancelling
    /// it cancels the acquire or interrupts the call, whichever is under way.
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
            [core = core_](auto handler) {
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
    explicit operator bool() const noexcept { return core_ != nullptr; }

private:
    explicit sandbox_pool(std::shared_ptr<detail::pool_core> core) : core_(std::move(core)) {}

    template <class R, class Token, class... Args>
    auto initiate_call(std::string_view name, Token&& token, const Args&... args) {
        return asio::async_initiate<Token, detail::call_signature<R>>(
            [core = core_](auto handler, std::string name, detail::owned_arguments args) mutable {
                using H = decltype(handler);
                struct call_state {
                    call_state(H h, const asio::any_io_executor& ex) : done(std::move(h), ex) {}
                    detail::completion<H> done;
                    asio::cancellation_signal inner;  // forwards cancellation to the guest call
                    std::atomic<bool> calling{false};
                    detail::pending_acquire waiter;
                    pool_lease lease;
                };
                auto state = std::make_shared<call_state>(std::move(handler), core->executor());
                auto slot = asio::get_associated_cancellation_slot(state->done.handler());
                const auto start = std::chrono::steady_clock::now();
                auto on_lease = [state, core, start, name = std::move(name), args = std::move(args)](
                                    std::error_code ec, pool_lease lease) mutable {
                    if (ec) {
                        if constexpr (std::is_void_v<R>) return state->done.complete(ec);
                        else return state->done.complete(ec, R{});
                    }
                    state->calling = true;
                    state->lease = std::move(lease);
                    state->lease->template async_call_with<R>(
                        name, std::move(args),
                        asio::bind_cancellation_slot(
                            state->inner.slot(), [state, core, start](std::error_code ec, auto... value) mutable {
                                state->lease.release();
                                core->record_latency(std::chrono::steady_clock::now() - start);
                                state->done.complete(ec, std::move(value)...);
                            }));
                };
                if (slot.is_connected()) {
                    slot.assign([state, weak = std::weak_ptr<detail::pool_core>(core)](asio::cancellation_type type) {
                        if (type == asio::cancellation_type::none) return;
                        if (state->calling) {
                            state->inner.emit(type);
                        } else if (auto c = weak.lock()) {
                            state->waiter.cancel(*c);
                        }
                    });
                }
                state->waiter.started(*core, acquire_raw(core, std::move(on_lease)));
            },
            token, std::string(name), detail::owned_arguments(args...));
    }

    // Acquire with a plain callable (the pool's executor), returning the waiter id for cancellation.
    template <class F>
    static std::uint64_t acquire_raw(const std::shared_ptr<detail::pool_core>& pool, F f) {
        struct waiter final : detail::pool_waiter {
            waiter(F fn, std::shared_ptr<detail::pool_core> c) : fn(std::move(fn)), core(std::move(c)) {}
            void deliver(std::error_code ec, std::optional<async_sandbox> sb) override {
                asio::post(core->executor(), [fn = std::move(fn), core = core, ec, sb = std::move(sb)]() mutable {
                    fn(ec, sb ? pool_lease(core, std::move(*sb)) : pool_lease());
                });
            }
            F fn;
            std::shared_ptr<detail::pool_core> core;
        };
        return pool->acquire(std::make_unique<waiter>(std::move(f), pool));
    }

    std::shared_ptr<detail::pool_core> core_;
};

}  // namespace hl
