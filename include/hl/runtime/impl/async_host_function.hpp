// SPDX-License-Identifier: Apache-2.0
// The definitions of the async host function templates, and the adapters that turn a coroutine
// into a host function's blocking and asynchronous forms.
#pragma once

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/random_access_file.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "hl/interrupt.hpp"

namespace hl {

namespace detail {

template <class T>
struct awaitable_result;
template <class T, class E>
struct awaitable_result<asio::awaitable<T, E>> {
    using type = T;
};

template <class F, class R, class... A>
auto blocking_host_function(asio::any_io_executor ex, F f, R (*)(A...)) {
    using T = typename awaitable_result<R>::type;
    return [ex = std::move(ex), f = std::move(f)](A... args) -> T {
        // Shared with the completion handler, which may still be returning from set_value() when
        // this thread wakes up. Failure travels as a message, not as the exception object, whose
        // reference count two threads would otherwise share inside the standard library.
        struct outcome {
            std::promise<void> ready;
            asio::cancellation_signal stop;  // emitted on `ex`, when the guest call is interrupted
            std::conditional_t<std::is_void_v<T>, bool, std::optional<T>> value{};
            std::string failure;
            bool failed = false;
        };
        auto state = std::make_shared<outcome>();
        auto finished = state->ready.get_future();
        // The arguments view guest memory, which stays put while this thread waits for the result.
        asio::co_spawn(ex, f(args...), asio::bind_cancellation_slot(state->stop.slot(), [state](std::exception_ptr e, auto... value) {
            if (e) {
                state->failed = true;
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    state->failure = x.what();
                } catch (...) {
                    state->failure = "a non-standard exception";
                }
            } else if constexpr (!std::is_void_v<T>) {  // T, not the pack size: clang 14 checks the branch early
                state->value.emplace(std::move(value)...);
            }
            state->ready.set_value();
        }));
        // A kill or deadline reaches the coroutine as an Asio cancellation; this thread still waits
        // for it to finish, since its arguments view guest memory.
        bool stop_sent = false;
        while (finished.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
            if (!stop_sent && current_call_interrupted()) {
                stop_sent = true;
                asio::post(ex, [state] { state->stop.emit(asio::cancellation_type::terminal); });
            }
        }
        if (state->failed) throw std::runtime_error(state->failure);
        if constexpr (!std::is_void_v<T>) return std::move(*state->value);
    };
}

inline void set_value(host_function::outcome&) {}
template <class V>
void set_value(host_function::outcome& outcome, V value) {
    outcome.value = to_return_value(std::move(value));
}

/// The asynchronous form of `f` (host_function::start_async): the coroutine is spawned on `ex`,
/// the guest call waits without holding its worker, and a stop request becomes a terminal Asio
/// cancellation of the coroutine (emitted on `ex`).
template <class F, class R, class... A>
auto async_host_starter(asio::any_io_executor ex, F f, R (*)(A...)) {
    return [ex = std::move(ex), f = std::move(f)](std::span<const argument> args,
                                                  std::function<void(host_function::outcome)> done)
               -> std::function<void()> {
        auto stop = std::make_shared<asio::cancellation_signal>();
        auto finish = [done = std::move(done), stop](std::exception_ptr e, auto... value) {
            host_function::outcome outcome;
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    outcome.failure = x.what();
                } catch (...) {
                    outcome.failure = "a non-standard exception";
                }
            } else {
                set_value(outcome, std::move(value)...);
            }
            done(std::move(outcome));
        };
        auto call = [&]<std::size_t... I>(std::index_sequence<I...>) {
            return f(from_argument<A>(args[I])...);
        }(std::index_sequence_for<A...>{});
        asio::co_spawn(ex, std::move(call), asio::bind_cancellation_slot(stop->slot(), std::move(finish)));
        return [ex, stop] { asio::post(ex, [stop] { stop->emit(asio::cancellation_type::terminal); }); };
    };
}

template <class F>
struct awaitable_signature : awaitable_signature<decltype(&F::operator())> {};
template <class C, class R, class... A>
struct awaitable_signature<R (C::*)(A...) const> {
    using type = R (*)(A...);
};
template <class C, class R, class... A>
struct awaitable_signature<R (C::*)(A...)> {
    using type = R (*)(A...);
};

}  // namespace detail

template <class Sandbox, class F>
void register_async_host_function(Sandbox& sandbox, std::string name, asio::any_io_executor ex, F f) {
    using sig = typename detail::awaitable_signature<F>::type;
    host_function fn = detail::make_host_function(detail::blocking_host_function(ex, f, sig{}));
    fn.start_async = detail::async_host_starter(std::move(ex), std::move(f), sig{});
    sandbox.register_host_function(std::move(name), std::move(fn));
}

inline auto timer_host_function(asio::any_io_executor ex) {
    return [ex](std::uint32_t milliseconds) -> asio::awaitable<void> {
        asio::steady_timer timer(ex, std::chrono::milliseconds(milliseconds));
        co_await timer.async_wait(asio::use_awaitable);
    };
}

}  // namespace hl
