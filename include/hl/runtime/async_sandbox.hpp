// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/error.hpp>
#include <asio/execution.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "hl/runtime/detail/async_core.hpp"
#include "hl/runtime/detail/task_cancellation.hpp"
#include "hl/sandbox.hpp"

namespace hl {

class async_sandbox;
class sandbox_pool;

namespace detail {

class pool_core;

/// The types async_call() accepts as arguments; anything else in last position is the token.
template <class T>
concept argument_like =
    std::same_as<std::remove_cvref_t<T>, bool> || std::same_as<std::remove_cvref_t<T>, std::int32_t> ||
    std::same_as<std::remove_cvref_t<T>, std::uint32_t> || std::same_as<std::remove_cvref_t<T>, std::int64_t> ||
    std::same_as<std::remove_cvref_t<T>, std::uint64_t> || std::same_as<std::remove_cvref_t<T>, long long> ||
    std::same_as<std::remove_cvref_t<T>, unsigned long long> || std::same_as<std::remove_cvref_t<T>, float> ||
    std::same_as<std::remove_cvref_t<T>, double> || std::is_convertible_v<const T&, std::string_view> ||
    std::is_convertible_v<const T&, std::span<const std::uint8_t>>;

/// Arguments copied for a call that runs later on another thread.
class owned_arguments {
public:
    template <class... A>
    explicit owned_arguments(const A&... a) {
        values_.reserve(sizeof...(A));
        (values_.push_back(own(to_argument(a))), ...);
    }
    std::vector<argument> views() const {
        std::vector<argument> out;
        out.reserve(values_.size());
        for (const auto& v : values_) {
            std::visit(
                [&out](const auto& x) {
                    using T = std::decay_t<decltype(x)>;
                    if constexpr (std::is_same_v<T, std::string>) out.emplace_back(std::string_view(x));
                    else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) out.emplace_back(std::span<const std::uint8_t>(x));
                    else if constexpr (!std::is_same_v<T, std::monostate>) out.emplace_back(x);
                },
                v);
        }
        return out;
    }

private:
    static return_value own(const argument& a) {
        return std::visit(
            [](const auto& x) -> return_value {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, std::string_view>) return std::string(x);
                else if constexpr (std::is_same_v<T, std::span<const std::uint8_t>>) return std::vector<std::uint8_t>(x.begin(), x.end());
                else return x;
            },
            a);
    }
    std::vector<return_value> values_;
};

/// Delivers an operation's result: posted to the handler's associated executor (never run on the
/// vCPU thread), with outstanding work tracked until then so io_context::run() does not return early.
template <class Handler>
class completion {
public:
    completion(Handler handler, const asio::any_io_executor& fallback)
        : work_(asio::prefer(asio::get_associated_executor(handler, fallback),
                             asio::execution::outstanding_work.tracked)),
          handler_(std::move(handler)) {}

    template <class... Values>
    void complete(std::error_code ec, Values&&... values) {
        auto ex = work_;
        asio::post(std::move(ex), [h = std::move(handler_), w = std::move(work_), ec,
                                   v = std::make_tuple(std::forward<Values>(values)...)]() mutable {
            asio::get_associated_cancellation_slot(h).clear();
            std::apply([&](auto&&... x) { std::move(h)(ec, std::move(x)...); }, std::move(v));
        });
    }

    /// As complete(), with the arguments (a tuple: the error code, then the values) made by `make()`
    /// when the completion runs: the last moment to decide them.
    template <class F>
    void complete_with(F make) {
        auto ex = work_;
        asio::post(std::move(ex), [h = std::move(handler_), w = std::move(work_), make = std::move(make)]() mutable {
            asio::get_associated_cancellation_slot(h).clear();
            std::apply([&](auto&&... x) { std::move(h)(std::move(x)...); }, make());
        });
    }

    Handler& handler() noexcept { return handler_; }

private:
    std::decay_t<decltype(asio::prefer(std::declval<asio::associated_executor_t<Handler, asio::any_io_executor>>(),
                                       asio::execution::outstanding_work.tracked))>
        work_;
    Handler handler_;
};

/// A job running `fn(sandbox, ec)` on the vCPU thread; `fn` returns a std::tuple of the values.
template <class Handler, class Fn, class Aborted>
class sandbox_job final : public worker_job {
public:
    sandbox_job(async_core& core, std::shared_ptr<op_state> op, completion<Handler> done, Fn fn, Aborted aborted,
                std::optional<std::uint64_t> holder)
        : core_(core),
          op_(std::move(op)),
          done_(std::move(done)),
          fn_(std::move(fn)),
          aborted_(std::move(aborted)),
          holder_(holder) {}

    void dequeued() noexcept override {
        if (op_) op_->phase = op_state::running;
        // Here, under the queue lock: a cancel() then always finds it running.
        may_run_ = core_.begin(op_.get(), holder_);
    }
    void run() override {
        if (!may_run_) {  // its holder released the sandbox before it could start
            core_.end(op_.get());
            std::apply([&](auto&&... v) { done_.complete(make_error_code(errc::usage_error), std::move(v)...); },
                       aborted_());
            return;
        }
        std::error_code ec;
        auto values = fn_(ec);
        core_.end(op_.get());
        std::apply([&](auto&&... v) { done_.complete(ec, std::move(v)...); }, std::move(values));
    }
    void abort() override {
        // A call of a holder that has let go of the sandbox says so, however it was dropped.
        const std::error_code ec = holder_ && core_.epoch() != *holder_ ? make_error_code(errc::usage_error)
                                                                         : std::error_code(asio::error::operation_aborted);
        std::apply([&](auto&&... v) { done_.complete(ec, std::move(v)...); }, aborted_());
    }

private:
    async_core& core_;
    std::shared_ptr<op_state> op_;
    completion<Handler> done_;
    Fn fn_;
    Aborted aborted_;
    std::optional<std::uint64_t> holder_;  // the epoch of the pool lease that made it, if one did
    bool may_run_ = true;
};

/// Queues `fn` on the sandbox's vCPU thread. A cancellable operation listens to the handler's
/// cancellation slot and, if `task` is given, to that task's cancellation (a pool task's call
/// stage): cancelled before it is queued, it never runs.
template <class Handler, class Fn, class Aborted>
void submit(const std::shared_ptr<async_core>& core, Handler handler, const asio::any_io_executor& ex, bool cancellable,
            Fn fn, Aborted aborted, bool wake = true, const std::shared_ptr<task_cancellation>& task = nullptr,
            std::optional<std::uint64_t> holder = std::nullopt) {
    std::shared_ptr<op_state> op;
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (cancellable) op = std::make_shared<op_state>();
    auto job = std::make_unique<sandbox_job<Handler, Fn, Aborted>>(
        *core, op, completion<Handler>(std::move(handler), ex), std::move(fn), std::move(aborted), holder);
    auto stop = [weak = std::weak_ptr<async_core>(core), op] {
        if (auto c = weak.lock()) c->cancel(op);
    };
    // Before the job is queued, as Asio's own operations do: once queued it may complete, and its
    // completion clears the slot, on any thread of a multi-threaded executor. A cancellation that
    // comes before the job is queued is remembered (op_state::cancel_early) and acted on then.
    if (op && slot.is_connected()) {
        slot.assign([stop](asio::cancellation_type type) {
            if (type != asio::cancellation_type::none) stop();
        });
    }
    if (op && task && !task->arm(stop)) {
        job->abort();  // the task was cancelled before its call could start: it never runs
        return;
    }
    core->submit(op, std::move(job), wake);
}

/// Completes an operation started on an empty handle (default-constructed, moved from, a released
/// lease) with errc::usage_error, posted like every completion. With no executor to post to (an
/// empty handle that never had one, and a handler without an associated executor), throws
/// hl::error(errc::usage_error) instead.
template <class Handler, class... Values>
void complete_usage_error(Handler handler, const asio::any_io_executor& fallback, const char* what, Values... values) {
    auto ex = asio::get_associated_executor(handler, fallback);
    if constexpr (std::is_same_v<decltype(ex), asio::any_io_executor>) {
        if (!ex) throw error(errc::usage_error, what);
    }
    completion<Handler>(std::move(handler), fallback).complete(make_error_code(errc::usage_error), std::move(values)...);
}

inline constexpr const char* empty_sandbox_message =
    "the async_sandbox is empty (default-constructed, moved from, or a released pool_lease), and has no executor";

template <class R>
struct call_signature_of {
    using type = void(std::error_code, R);
};
template <>
struct call_signature_of<void> {
    using type = void(std::error_code);
};
template <class R>
using call_signature = typename call_signature_of<R>::type;

/// Whether the last of `Ts` is a completion token rather than an argument.
template <class... Ts>
struct last_is_token : std::false_type {};
template <class T>
struct last_is_token<T> : std::bool_constant<!argument_like<T>> {};
template <class T, class U, class... Rest>
struct last_is_token<T, U, Rest...> : last_is_token<U, Rest...> {};

/// For `op(name, args..., token)` style initiating functions: calls f(token, args...), where the
/// token is the last argument if it is one, and asio::use_awaitable otherwise.
template <class F, class... ArgsAndToken>
auto with_token_last(F&& f, ArgsAndToken&&... all) {
    if constexpr (last_is_token<ArgsAndToken...>::value) {
        auto tuple = std::forward_as_tuple(std::forward<ArgsAndToken>(all)...);
        return [&]<std::size_t... I>(std::index_sequence<I...>) {
            return f(std::get<sizeof...(I)>(std::move(tuple)), std::get<I>(tuple)...);
        }(std::make_index_sequence<sizeof...(ArgsAndToken) - 1>{});
    } else {
        return f(asio::use_awaitable, all...);
    }
}

}  // namespace detail


/// A sandbox whose vCPU lives on its own worker thread for its whole life (creation, calls,
/// snapshot, restore and destruction all happen there), driven from Asio. Every operation is an Asio
/// initiating function: its completion runs on the handler's associated executor (by default the
/// sandbox's executor), never on the vCPU thread, and works with asio::use_awaitable (the default
/// token), asio::experimental::as_tuple, asio::use_future and plain callbacks.
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
/// running call, completes queued operations with asio::error::operation_aborted, and joins the
/// worker thread (from one of the sandbox's own host functions, another thread does that once the
/// call has returned).
///
/// Thread-safety: operations may be started from any thread.
///
/// Lifetimes: keep the executor's io_context alive, and running, until every operation on the
/// sandbox has completed (completions are posted to it).
class async_sandbox {
public:
    using executor_type = asio::any_io_executor;

    async_sandbox() = default;
    async_sandbox(const async_sandbox&) = delete;
    async_sandbox& operator=(const async_sandbox&) = delete;
    /// `other` is left empty, with its executor.
    async_sandbox(async_sandbox&& other) noexcept : core_(std::move(other.core_)), ex_(other.ex_) {}
    async_sandbox& operator=(async_sandbox&& other) noexcept {
        core_ = std::move(other.core_);  // a sandbox this handle had is destroyed
        ex_ = other.ex_;
        return *this;
    }
    ~async_sandbox() = default;

    /// Loads `guest`, runs `setup` (register host functions and handlers) and evolves the sandbox,
    /// all on a new vCPU thread. Completes with void(std::error_code, async_sandbox).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                             std::function<void(uninitialized_sandbox&)> setup, Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code, async_sandbox)>(
            [](auto handler, executor_type ex, std::filesystem::path guest, sandbox_config config,
               std::function<void(uninitialized_sandbox&)> setup) {
                auto core = detail::async_core::create();
                auto* raw = core.get();
                detail::submit(
                    core, std::move(handler), ex, false,
                    [raw, core, ex, guest = std::move(guest), config, setup = std::move(setup)](std::error_code& ec) mutable {
                        guarded(*raw, 0, ec, [&] {
                            raw->create([&] {
                                auto u = uninitialized_sandbox::from_file(guest, config);
                                if (setup) setup(u);
                                return std::move(u).evolve();
                            });
                        });
                        return finish_creation(std::move(core), ex, ec);
                    },
                    [ex] { return std::make_tuple(async_sandbox(ex)); });
            },
            token, std::move(ex), std::move(guest), std::move(config), std::move(setup));
    }

    /// A sandbox mapping `snap` copy-on-write (no guest initialisation), created on a new vCPU
    /// thread; `bind` registers its host functions and handlers there. Completes with
    /// void(std::error_code, async_sandbox).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create_from(executor_type ex, std::shared_ptr<const snapshot> snap,
                                  std::function<void(multi_use_sandbox&)> bind, Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code, async_sandbox)>(
            [](auto handler, executor_type ex, std::shared_ptr<const snapshot> snap,
               std::function<void(multi_use_sandbox&)> bind) {
                auto core = detail::async_core::create();
                auto* raw = core.get();
                detail::submit(
                    core, std::move(handler), ex, false,
                    [raw, core, ex, snap = std::move(snap), bind = std::move(bind)](std::error_code& ec) mutable {
                        guarded(*raw, 0, ec, [&] {
                            raw->create([&] {
                                auto sb = multi_use_sandbox::from_snapshot(snap);
                                if (bind) bind(sb);
                                return sb;
                            });
                        });
                        return finish_creation(std::move(core), ex, ec);
                    },
                    [ex] { return std::make_tuple(async_sandbox(ex)); });
            },
            token, std::move(ex), std::move(snap), std::move(bind));
    }

    /// Calls the guest function `name`: `async_call<R>(name, args..., token)`; with no token,
    /// asio::use_awaitable. Completes with void(std::error_code, R) (void(std::error_code) for R =
    /// void); the error's message is last_error(). Arguments are copied.
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
        return detail::with_token_last(
            [&](auto&& token, const auto&... args) {
                return async_call_with<R>(name, detail::owned_arguments(args...), nullptr,
                                          std::forward<decltype(token)>(token));
            },
            std::forward<ArgsAndToken>(args_and_token)...);
    }

    /// Takes a snapshot on the vCPU thread. Completes with
    /// void(std::error_code, std::shared_ptr<const snapshot>).
    template <class Token = asio::use_awaitable_t<>>
    auto async_snapshot(Token&& token = {}) {
        return asio::async_initiate<Token, void(std::error_code, std::shared_ptr<const snapshot>)>(
            [core = core_, ex = ex_](auto handler) {
                if (!core) {
                    return detail::complete_usage_error(std::move(handler), ex, detail::empty_sandbox_message,
                                                        std::shared_ptr<const snapshot>());
                }
                detail::submit(
                    core, std::move(handler), ex, false,
                    [raw = core.get(), epoch = core->epoch()](std::error_code& ec) {
                        std::shared_ptr<const snapshot> snap;
                        guarded(*raw, epoch, ec, [&] { snap = raw->sandbox().snapshot(); });
                        return std::make_tuple(std::move(snap));
                    },
                    [] { return std::make_tuple(std::shared_ptr<const snapshot>()); });
            },
            token);
    }

    /// Restores `snap` on the vCPU thread; once restored, last_error() is empty. Completes with
    /// void(std::error_code).
    template <class Token = asio::use_awaitable_t<>>
    auto async_restore(std::shared_ptr<const snapshot> snap, Token&& token = {}) {
        return initiate_restore(std::move(snap), std::forward<Token>(token), false);
    }

    /// As async_restore(), but queued without waking the vCPU thread: the restore runs ahead of the
    /// sandbox's next operation, in the same wake-up, or at once if the thread is awake anyway (the
    /// pool's recycling: one thread switch per task instead of two). Until something wakes the
    /// thread it does not run: the pool wakes it after a short delay. It hands the sandbox to a new
    /// holder at once: last_error() is empty from now on, and operations started before record no
    /// error there.
    template <class Token>
    auto async_restore_deferred(std::shared_ptr<const snapshot> snap, Token&& token) {
        return initiate_restore(std::move(snap), std::forward<Token>(token), true);
    }

    /// Stops the running call from any thread (see hl::interrupt_handle). Throws hl::error
    /// (errc::usage_error) on an empty handle.
    hl::interrupt_handle interrupt_handle() const {
        if (!core_) {
            throw error(errc::usage_error,
                        "interrupt_handle() on an empty async_sandbox (default-constructed or moved from)");
        }
        return core_->interrupt_handle();
    }

    /// The message of the last operation that failed; empty on an empty handle.
    std::string last_error() const { return core_ ? core_->last_error() : std::string(); }

    /// The executor completions default to; a moved-from handle keeps it, a default-constructed one
    /// has none.
    executor_type get_executor() const noexcept { return ex_; }
    /// False for an empty handle.
    explicit operator bool() const noexcept { return core_ != nullptr; }

private:
    friend class detail::pool_core;  // wakes deferred restores, tells sandboxes apart
    friend class sandbox_pool;       // calls with a pool task's cancellation
    friend class pool_lease;         // calls as the holder of the lease

    explicit async_sandbox(executor_type ex) noexcept : ex_(std::move(ex)) {}
    async_sandbox(std::shared_ptr<detail::async_core> core, executor_type ex) : core_(std::move(core)), ex_(std::move(ex)) {}

    static std::tuple<async_sandbox> finish_creation(std::shared_ptr<detail::async_core> core, const executor_type& ex,
                                                     std::error_code ec) {
        if (ec) {
            // Released on the executor: cheaper than the thread async_core::create() would start
            // for a core released on its own vCPU thread.
            asio::post(ex, [doomed = std::move(core)] {});
            return std::make_tuple(async_sandbox(ex));
        }
        return std::make_tuple(async_sandbox(std::move(core), ex));
    }

    // Runs `f`, turning what it throws into `ec` and a last_error() of `epoch`.
    template <class F>
    static void guarded(detail::async_core& core, std::uint64_t epoch, std::error_code& ec, F&& f) {
        try {
            f();
        } catch (const std::system_error& e) {
            ec = e.code();
            core.set_last_error(epoch, e.what());
        } catch (const std::exception& e) {
            ec = make_error_code(errc::vm_error);
            core.set_last_error(epoch, e.what());
        } catch (...) {
            ec = make_error_code(errc::vm_error);
            core.set_last_error(epoch, "a non-standard exception");
        }
    }

    template <class Token>
    auto initiate_restore(std::shared_ptr<const snapshot> snap, Token&& token, bool deferred) {
        return asio::async_initiate<Token, void(std::error_code)>(
            [core = core_, ex = ex_, deferred](auto handler, std::shared_ptr<const snapshot> snap) {
                if (!core) return detail::complete_usage_error(std::move(handler), ex, detail::empty_sandbox_message);
                if (deferred) core->new_epoch();  // before anything of the next holder can look
                detail::submit(
                    core, std::move(handler), ex, false,
                    [raw = core.get(), epoch = core->epoch(), snap = std::move(snap)](std::error_code& ec) {
                        guarded(*raw, epoch, ec, [&] { raw->sandbox().restore(snap); });
                        if (!ec) raw->set_last_error(epoch, {});
                        return std::tuple<>();
                    },
                    [] { return std::tuple<>(); }, /*wake=*/!deferred);
            },
            token, std::move(snap));
    }

    // The epoch a new pool lease holds this sandbox in (see async_core::begin()).
    std::uint64_t holder_epoch() const { return core_ ? core_->epoch() : 0; }

    // async_call() with arguments already copied and, for the pool, the task whose cancellation
    // the call must honour along with the handler's, and the holder the call belongs to: taken
    // here, when the call is made, not when a lazy token (use_awaitable, deferred) launches it.
    template <class R, class Token>
    auto async_call_with(std::string_view name, detail::owned_arguments owned,
                         std::shared_ptr<detail::task_cancellation> task, Token&& token,
                         std::optional<std::uint64_t> holder = std::nullopt) {
        return asio::async_initiate<Token, detail::call_signature<R>>(
            [core = core_, ex = ex_, holder](auto handler, std::string name, detail::owned_arguments args,
                                             std::shared_ptr<detail::task_cancellation> task) {
                if (!core) {
                    if constexpr (std::is_void_v<R>) {
                        return detail::complete_usage_error(std::move(handler), ex, detail::empty_sandbox_message);
                    } else {
                        return detail::complete_usage_error(std::move(handler), ex, detail::empty_sandbox_message, R{});
                    }
                }
                detail::submit(
                    core, std::move(handler), ex, true,
                    [raw = core.get(), epoch = holder ? *holder : core->epoch(), name = std::move(name),
                     args = std::move(args)](std::error_code& ec) {
                        return_value r;
                        guarded(*raw, epoch, ec, [&] {
                            const auto views = args.views();
                            r = raw->sandbox().call_dynamic(name, detail::value_traits<R>::type, views);
                        });
                        if constexpr (std::is_void_v<R>) {
                            return std::tuple<>();
                        } else {
                            return std::make_tuple(ec ? R{} : std::get<R>(std::move(r)));
                        }
                    },
                    [] {
                        if constexpr (std::is_void_v<R>) return std::tuple<>();
                        else return std::make_tuple(R{});
                    },
                    true, task, holder);
            },
            token, std::string(name), std::move(owned), std::move(task));
    }

    std::shared_ptr<detail::async_core> core_;
    executor_type ex_;
};

}  // namespace hl
