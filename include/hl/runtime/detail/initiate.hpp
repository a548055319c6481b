// SPDX-License-Identifier: Apache-2.0
// The initiating functions shared by async_sandbox, pool_lease and sandbox_pool.
#pragma once

#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "hl/runtime/detail/call_operation.hpp"
#include "hl/runtime/diagnostics.hpp"

namespace hl::detail {

/// The types async_call() accepts as arguments; anything else in last position is the token.
template <class T>
concept argument_like =
    std::same_as<std::remove_cvref_t<T>, bool> || std::same_as<std::remove_cvref_t<T>, std::int32_t> ||
    std::same_as<std::remove_cvref_t<T>, std::uint32_t> || std::same_as<std::remove_cvref_t<T>, std::int64_t> ||
    std::same_as<std::remove_cvref_t<T>, std::uint64_t> || std::same_as<std::remove_cvref_t<T>, long long> ||
    std::same_as<std::remove_cvref_t<T>, unsigned long long> || std::same_as<std::remove_cvref_t<T>, float> ||
    std::same_as<std::remove_cvref_t<T>, double> || std::is_convertible_v<const T&, std::string_view> ||
    std::is_convertible_v<const T&, std::span<const std::uint8_t>>;

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

/// Completes an operation started on an empty handle with errc::usage_error, deferred like every
/// completion. With no executor to complete on (an empty handle that never had one, and a handler
/// without an associated executor), throws hl::error(errc::usage_error) instead.
template <class Handler, class... Values>
void complete_usage_error(Handler handler, const asio::any_io_executor& fallback, diagnostics* diag,
                          const char* what, Values... values) {
    auto ex = asio::get_associated_executor(handler, fallback);
    if constexpr (std::is_same_v<decltype(ex), asio::any_io_executor>) {
        if (!ex) throw error(errc::usage_error, what);
    }
    completion<Handler>(std::move(handler), fallback, diag)
        .complete(make_error_code(errc::usage_error), what, std::move(values)...);
}

/// What a call is made with besides its name and arguments.
struct call_context {
    call_limits limits;
    std::optional<std::uint64_t> holder;       // a lease's epoch
    const char* empty_message = "the sandbox handle is empty";
};

/// Starts a call of `name` on `state` (null: complete with usage_error). A cancellation through
/// the handler's slot withdraws it while queued and kills it while it runs.
template <class R, class Token, class... Args>
auto initiate_call(std::shared_ptr<sandbox_state> state, asio::any_io_executor ex, std::string_view name,
                   call_context context, Token&& token, const Args&... args) {
    constexpr std::size_t N = sizeof...(Args);
    auto [diag, inner] = split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), call_signature<R>>(
        [diag = diag](auto handler, std::shared_ptr<sandbox_state> state, asio::any_io_executor ex, std::string name,
                      owned_arguments<N> args, call_context context) {
            if (!state) {
                if constexpr (std::is_void_v<R>) {
                    return complete_usage_error(std::move(handler), ex, diag, context.empty_message);
                } else {
                    return complete_usage_error(std::move(handler), ex, diag, context.empty_message, R{});
                }
            }
            using H = decltype(handler);
            auto slot = asio::get_associated_cancellation_slot(handler);
            const std::uint64_t epoch = context.holder ? *context.holder : state->epoch();
            auto* op = new call_operation<H, R, N>(completion<H>(std::move(handler), ex, diag), name, std::move(args),
                                                   context.limits, epoch);
            op->holder = context.holder;
            op->id = state->next_id();
            auto stop = [weak = std::weak_ptr<sandbox_state>(state), id = op->id] {
                if (auto s = weak.lock()) s->cancel(id);
            };
            // Before the operation is queued, as Asio's own operations do: once queued it may
            // complete, and its completion clears the slot.
            if (slot.is_connected()) {
                slot.assign([stop](asio::cancellation_type type) {
                    if (type != asio::cancellation_type::none) stop();
                });
            }
            state->submit(op);
        },
        inner, std::move(state), std::move(ex), std::string(name), owned_arguments<N>(args...), std::move(context));
}

/// Starts `fn(state, message) -> std::pair<std::error_code, std::tuple<Values...>>` on `state`'s
/// worker as an operation completing with void(std::error_code, Values...).
template <class Signature, class Token, class Fn, class Aborted>
auto initiate_task(std::shared_ptr<sandbox_state> state, asio::any_io_executor ex, const char* empty_message,
                   Token&& token, Fn fn, Aborted aborted, bool background = false) {
    auto [diag, inner] = split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), Signature>(
        [diag = diag, empty_message, background](auto handler, std::shared_ptr<sandbox_state> state,
                                                 asio::any_io_executor ex, Fn fn, Aborted aborted) {
            if (!state) {
                return std::apply(
                    [&](auto... v) { complete_usage_error(std::move(handler), ex, diag, empty_message, std::move(v)...); },
                    aborted());
            }
            using H = decltype(handler);
            auto* op = new task_operation<H, Fn, Aborted>(completion<H>(std::move(handler), ex, diag), std::move(fn),
                                                          std::move(aborted));
            op->id = state->next_id();
            op->background = background;
            state->submit(op, !background);
        },
        inner, std::move(state), std::move(ex), std::move(fn), std::move(aborted));
}

/// Runs `f` on the worker, turning what it throws into an error code and message (recorded as
/// last_error() of `epoch`).
template <class F>
std::error_code guarded(sandbox_state& state, std::uint64_t epoch, std::string& message, F&& f) {
    std::error_code ec;
    try {
        f();
        return ec;
    } catch (const std::system_error& e) {
        ec = e.code();
        message = e.what();
    } catch (const std::exception& e) {
        ec = make_error_code(errc::vm_error);
        message = e.what();
    } catch (...) {
        ec = make_error_code(errc::vm_error);
        message = "a non-standard exception";
    }
    state.set_last_error(epoch, message);
    return ec;
}

}  // namespace hl::detail
