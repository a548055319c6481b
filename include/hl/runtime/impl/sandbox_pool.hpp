// SPDX-License-Identifier: Apache-2.0
// The definitions of pool_lease's and sandbox_pool's members, and the waiters their operations
// queue on the pool.
#pragma once

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/execution/context.hpp>
#include <asio/post.hpp>
#include <asio/query.hpp>

#include <tuple>
#include <type_traits>
#include <utility>

namespace hl {

namespace detail {

/// A pool_lease for an async_acquire().
template <class Handler>
struct lease_waiter final : pool_waiter {
    lease_waiter(Handler h, std::shared_ptr<pool_core> c, std::shared_ptr<task_cancellation> t, diagnostics* d)
        : done(std::move(h), c->executor(), d), core(std::move(c)), task(std::move(t)) {}
    void deliver(std::error_code ec, std::shared_ptr<sandbox_state> sb) override {
        // The lease's calls complete by default on the holder's executor; on the pool's for a
        // holder whose executor may run anywhere (use_future's).
        asio::any_io_executor ex = core->executor();
        if constexpr (!runs_anywhere<asio::associated_executor_t<Handler, asio::any_io_executor>>::value) {
            ex = asio::get_associated_executor(done.handler(), core->executor());
        }
        auto lease = sb ? pool_lease(core, std::move(sb), ex) : pool_lease();
        // The hand-over: a cancellation that came after the pool chose this waiter gives the
        // sandbox back, up to the moment the holder would get it.
        done.complete_with([task = task, ec, lease = std::move(lease)]() mutable {
            if (lease && task && task->cancelled()) {
                lease.release();
                ec = asio::error::operation_aborted;
            }
            return std::make_tuple(ec, pool_error_message(ec), std::move(lease));
        });
    }
    completion<Handler> done;
    std::shared_ptr<pool_core> core;
    std::shared_ptr<task_cancellation> task;
};

/// A pool task's call, made when the task gets its sandbox.
template <class Operation>
struct call_waiter final : pool_waiter {
    call_waiter(Operation* o, std::shared_ptr<pool_core> c, std::shared_ptr<task_cancellation> t,
                asio::any_io_executor task_executor)
        : op(o), core(std::move(c)), task(std::move(t)), ex(std::move(task_executor)),
          start(std::chrono::steady_clock::now()) {}
    ~call_waiter() override {
        if (op != nullptr) op->abort(asio::error::operation_aborted);
    }
    void deliver(std::error_code ec, std::shared_ptr<sandbox_state> sb) override {
        auto* o = std::exchange(op, nullptr);
        if (ec) return o->abort(ec);
        // On an executor that may run anywhere (use_future's), where the sandbox is given back.
        if (immediate || !ex) return call(o, std::move(sb), task, start);
        // Handed a sandbox that another task gave back: the call is made on the task's own
        // executor, so that a cancellation there still finds it before it could run.
        o->leased(sb);  // given back if it never gets there
        asio::post(ex, [o = handed(o), sb = std::move(sb), task = task, start = start]() mutable {
            call(o.release(), std::move(sb), task, start);
        });
    }
    // The task on its way to its executor: if that destroys it unrun (an io_context destroyed
    // after a stop()), it ends with operation_aborted and gives the sandbox back.
    struct handed {
        explicit handed(Operation* o) noexcept : op(o) {}
        handed(handed&& other) noexcept : op(std::exchange(other.op, nullptr)) {}
        handed(const handed&) = delete;
        handed& operator=(const handed&) = delete;
        handed& operator=(handed&&) = delete;
        ~handed() {
            if (op != nullptr) op->abort(asio::error::operation_aborted);
        }
        Operation* release() noexcept { return std::exchange(op, nullptr); }
        Operation* op;
    };
    static void call(Operation* o, std::shared_ptr<sandbox_state> sb, const std::shared_ptr<task_cancellation>& task,
                     std::chrono::steady_clock::time_point start) {
        o->holder = sb->epoch();
        o->set_epoch(*o->holder);
        o->count_latency_from(start);
        auto stop = [weak = std::weak_ptr<sandbox_state>(sb), id = o->id] {
            if (auto s = weak.lock()) s->cancel(id);
        };
        o->leased(sb);
        o->cover_release();
        if (task && !task->arm(stop)) return o->abort(asio::error::operation_aborted);  // gives the sandbox back
        sb->submit(o);
    }
    Operation* op;
    std::shared_ptr<pool_core> core;
    std::shared_ptr<task_cancellation> task;
    asio::any_io_executor ex;
    std::chrono::steady_clock::time_point start;
};

}  // namespace detail

inline pool_lease::pool_lease(pool_lease&& other) noexcept
    : pool_(std::move(other.pool_)), state_(std::move(other.state_)), ex_(other.ex_), epoch_(other.epoch_) {}

inline pool_lease& pool_lease::operator=(pool_lease&& other) noexcept {
    if (this != &other) {
        try {
            release();
        } catch (...) {
            // Out of memory while recycling: the sandbox is dropped instead of reused.
        }
        pool_ = std::move(other.pool_);
        state_ = std::move(other.state_);
        ex_ = other.ex_;
        epoch_ = other.epoch_;
    }
    return *this;
}

inline pool_lease::~pool_lease() {
    try {
        release();
    } catch (...) {
        // Out of memory while recycling: the sandbox is dropped instead of reused.
    }
}

inline pool_lease::pool_lease(std::shared_ptr<detail::pool_core> pool, std::shared_ptr<detail::sandbox_state> state,
                              executor_type ex)
    : pool_(std::move(pool)), state_(std::move(state)), ex_(std::move(ex)), epoch_(state_->epoch()) {}

template <class R, class... ArgsAndToken>
    requires detail::return_type<R>
auto pool_lease::async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, {}, std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class Rep, class Period, class... ArgsAndToken>
    requires detail::return_type<R>
auto pool_lease::async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                                ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, call_limits{std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), {}},
                        std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class... ArgsAndToken>
    requires detail::return_type<R>
auto pool_lease::async_call_for(const call_limits& limits, std::string_view name, ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, limits, std::forward<ArgsAndToken>(args_and_token)...);
}

inline std::string pool_lease::last_error() const {
    return state_ && state_->epoch() == epoch_ ? state_->last_error() : std::string();
}

inline void pool_lease::release() {
    auto pool = std::move(pool_);
    if (auto state = std::move(state_); pool && state) pool->release(std::move(state));
}

template <class R, class... ArgsAndToken>
auto pool_lease::call_with(std::string_view name, const call_limits& limits, ArgsAndToken&&... args_and_token) {
    return detail::with_token_last(
        [&](auto&& token, const auto&... args) {
            detail::call_context context;
            context.limits = pool_ ? limits.or_else(pool_->default_limits()) : limits;
            context.holder = epoch_;
            context.empty_message = "the pool_lease is empty (released or moved from)";
            return detail::initiate_call<R>(state_, ex_, name, std::move(context),
                                            std::forward<decltype(token)>(token), args...);
        },
        std::forward<ArgsAndToken>(args_and_token)...);
}

inline sandbox_pool::sandbox_pool(sandbox_pool&& other) noexcept : core_(std::move(other.core_)), ex_(other.ex_) {}

inline sandbox_pool& sandbox_pool::operator=(sandbox_pool&& other) noexcept {
    if (this != &other) {
        close();
        core_ = std::move(other.core_);
        ex_ = other.ex_;
    }
    return *this;
}

inline sandbox_pool::~sandbox_pool() { close(); }

inline sandbox_pool::sandbox_pool(executor_type ex) noexcept : ex_(std::move(ex)) {}

inline sandbox_pool::sandbox_pool(std::shared_ptr<detail::pool_core> core)
    : core_(std::move(core)), ex_(core_->executor()) {}

template <class Token>
auto sandbox_pool::async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                                std::function<void(multi_use_sandbox&)> bind, pool_options options, Token&& token) {
    auto [diag, inner] = detail::split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), void(std::error_code, sandbox_pool)>(
        [diag = diag](auto handler, executor_type ex, std::filesystem::path guest, sandbox_config config,
                      std::function<void(multi_use_sandbox&)> bind, pool_options options) {
            using done_type = detail::completion<decltype(handler)>;
            if (options.call_limits.timeout.count() < 0 || options.call_limits.cpu_time.count() < 0) {
                return detail::complete_usage_error(std::move(handler), ex, diag,
                                                    "pool_options::call_limits holds a negative duration; 0 means "
                                                    "no limit",
                                                    sandbox_pool(ex));
            }
            // What the creation carries from step to step. On a failure `bind` goes before the
            // completion: once that has run, nothing of the application's is left for a worker
            // to destroy. On a runtime of the application's the steps complete on its worker,
            // and a cover taken here, on the initiating thread, covers them and the first
            // sandboxes' creations (see pool_core::cover_of()); members go in reverse order, the
            // cover last. Otherwise they complete on `ex`, whose work they are while queued
            // there, and the creations take their cover then.
            struct steps {
                detail::cover work;
                std::shared_ptr<done_type> done;
                executor_type ex;
                std::function<void(multi_use_sandbox&)> bind;
                pool_options options;
                std::shared_ptr<async_sandbox> holder;  // the template, once it exists
            };
            auto place = options.runtime != nullptr ? options.runtime->get_executor() : executor_type(ex);
            auto work = options.runtime != nullptr ? detail::cover::of(ex) : detail::cover();
            steps s{std::move(work), std::make_shared<done_type>(std::move(handler), ex, diag), ex, std::move(bind),
                    options, nullptr};
            async_sandbox::async_create(
                place, std::move(guest), config, {},
                [s = std::move(s)](std::error_code ec, async_sandbox tmpl) mutable {
                    if (ec) {
                        s.bind = nullptr;
                        return s.done->complete(ec, "the pool's template sandbox could not be created",
                                                sandbox_pool(s.ex));
                    }
                    s.holder = std::make_shared<async_sandbox>(std::move(tmpl));
                    auto& holder = *s.holder;
                    holder.async_snapshot([s = std::move(s)](std::error_code ec,
                                                             std::shared_ptr<const snapshot> clean) mutable {
                        if (ec) {
                            s.bind = nullptr;
                            return s.done->complete(ec, s.holder->last_error(), sandbox_pool(s.ex));
                        }
                        auto core =
                            std::make_shared<detail::pool_core>(s.ex, std::move(clean), std::move(s.bind), s.options);
                        core->start(s.work);
                        s.done->complete(ec, {}, sandbox_pool(std::move(core)));
                    });
                });
        },
        inner, std::move(ex), std::move(guest), std::move(config), std::move(bind), options);
}

template <class Token>
auto sandbox_pool::async_create(executor_type ex, std::shared_ptr<const snapshot> clean,
                                std::function<void(multi_use_sandbox&)> bind, pool_options options, Token&& token) {
    auto [diag, inner] = detail::split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), void(std::error_code, sandbox_pool)>(
        [diag = diag](auto handler, executor_type ex, std::shared_ptr<const snapshot> clean,
                      std::function<void(multi_use_sandbox&)> bind, pool_options options) {
            const char* refused = nullptr;
            if (options.call_limits.timeout.count() < 0 || options.call_limits.cpu_time.count() < 0) {
                refused = "pool_options::call_limits holds a negative duration; 0 means no limit";
            } else if (clean == nullptr) {
                refused = "sandbox_pool::async_create was given a null snapshot";
            }
            if (refused != nullptr) {
                bind = nullptr;
                return detail::complete_usage_error(std::move(handler), ex, diag, refused, sandbox_pool(ex));
            }
            // As the template's last step above, on the initiating thread: a cover of `ex` taken
            // here (where it is known to run, if anywhere) covers the first creations.
            detail::completion<decltype(handler)> done(std::move(handler), ex, diag);
            auto core = std::make_shared<detail::pool_core>(ex, std::move(clean), std::move(bind), options);
            core->start(detail::cover::of(ex));
            done.complete({}, {}, sandbox_pool(std::move(core)));
        },
        inner, std::move(ex), std::move(clean), std::move(bind), options);
}

template <class Token>
auto sandbox_pool::async_acquire(Token&& token) {
    auto [diag, inner] = detail::split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), void(std::error_code, pool_lease)>(
        [core = core_, ex = ex_, diag = diag](auto handler) {
            if (!core) return detail::complete_usage_error(std::move(handler), ex, diag, empty_message, pool_lease());
            using H = decltype(handler);
            auto task = cancellation_of(handler);
            core->acquire(std::make_unique<detail::lease_waiter<H>>(std::move(handler), core, task, diag), task);
        },
        inner);
}

template <class R, class... ArgsAndToken>
    requires detail::return_type<R>
auto sandbox_pool::async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, {}, std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class Rep, class Period, class... ArgsAndToken>
    requires detail::return_type<R>
auto sandbox_pool::async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                                  ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, call_limits{std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), {}},
                        std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class... ArgsAndToken>
    requires detail::return_type<R>
auto sandbox_pool::async_call_for(const call_limits& limits, std::string_view name, ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, limits, std::forward<ArgsAndToken>(args_and_token)...);
}

template <class Token>
auto sandbox_pool::async_drain(Token&& token) {
    return asio::async_initiate<Token, void(std::error_code)>(
        [core = core_, ex = ex_](auto handler) {
            if (!core) return detail::complete_usage_error(std::move(handler), ex, nullptr, empty_message);
            auto done = std::make_shared<detail::completion<decltype(handler)>>(std::move(handler), core->executor());
            core->when_drained([done] { done->complete({}, {}); });
        },
        token);
}

inline void sandbox_pool::close() {
    if (core_) core_->close();
}

inline pool_stats sandbox_pool::stats() const { return core_ ? core_->stats() : pool_stats{}; }

template <class Handler>
std::shared_ptr<detail::task_cancellation> sandbox_pool::cancellation_of(Handler& handler) {
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

template <class R, class... ArgsAndToken>
auto sandbox_pool::call_with(std::string_view name, const call_limits& limits, ArgsAndToken&&... args_and_token) {
    return detail::with_token_last(
        [&](auto&& token, const auto&... args) {
            return initiate_pool_call<R>(name, limits, std::forward<decltype(token)>(token), args...);
        },
        std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class Token, class... Args>
auto sandbox_pool::initiate_pool_call(std::string_view name, const call_limits& limits, Token&& token,
                                      const Args&... args) {
    constexpr std::size_t N = sizeof...(Args);
    auto [diag, inner] = detail::split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), detail::call_signature<R>>(
        [core = core_, ex = ex_, diag = diag, limits](auto handler, std::string name,
                                                      detail::owned_arguments<N> args) mutable {
            if (!core) {
                if constexpr (std::is_void_v<R>) {
                    return detail::complete_usage_error(std::move(handler), ex, diag, empty_message);
                } else {
                    return detail::complete_usage_error(std::move(handler), ex, diag, empty_message, R{});
                }
            }
            using H = decltype(handler);
            // One cancellation for the whole task: the acquire, the hand-over and the call each
            // arm it in turn, so that it reaches whichever is under way when it comes.
            auto task = cancellation_of(handler);
            // Empty for a handler that may run anywhere (use_future's): see call_waiter::deliver().
            asio::any_io_executor task_executor;
            if constexpr (!detail::runs_anywhere<asio::associated_executor_t<H, executor_type>>::value) {
                task_executor = asio::get_associated_executor(handler, core->executor());
            }
            auto* op = new detail::call_operation<H, R, N>(detail::completion<H>(std::move(handler), core->executor(), diag),
                                                           name, std::move(args),
                                                           limits.or_else(core->default_limits()), 0);
            op->id = detail::sandbox_state::next_id();
            op->release_to(core);
            // A task whose executor belongs to another context than the pool's: its hand-over is
            // work of that context, not of the pool's, so it is covered from here.
            const auto& pool_context = asio::query(core->executor(), asio::execution::context);
            if (!task_executor || &asio::query(task_executor, asio::execution::context) != &pool_context) {
                op->cover_release();
            }
            core->acquire(std::make_unique<detail::call_waiter<detail::call_operation<H, R, N>>>(op, core, task,
                                                                                                std::move(task_executor)),
                          task);
        },
        inner, std::string(name), detail::owned_arguments<N>(args...));
}

}  // namespace hl
