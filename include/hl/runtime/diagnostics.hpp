// SPDX-License-Identifier: Apache-2.0
// The message of an asynchronous operation's failure, delivered with its completion.
#pragma once

#include <asio/use_awaitable.hpp>

#include <string>
#include <type_traits>
#include <utility>

namespace hl {

/// Receives what went wrong in words (what happened, what to do) when an operation completes
/// with an error; an Asio completion carries only the std::error_code. Empty after a success.
/// Pass it with with_diagnostics(); it must outlive the operation, and is written on the
/// completion's executor just before the completion handler runs.
struct diagnostics {
    std::string message;
};

/// A completion token adapter: `co_await sb.async_call<int>("Add", 1, 2, hl::with_diagnostics(d))`
/// completes as `token` does (asio::use_awaitable by default) and fills `d`. Accepted by the calls,
/// creation, snapshot and restore of async_sandbox, pool_lease and sandbox_pool.
template <class Token = asio::use_awaitable_t<>>
struct with_diagnostics_t {
    diagnostics* target;
    Token token;
};

template <class Token = asio::use_awaitable_t<>>
with_diagnostics_t<std::decay_t<Token>> with_diagnostics(diagnostics& d, Token&& token = {}) {
    return {&d, std::forward<Token>(token)};
}

namespace detail {

template <class T>
struct is_with_diagnostics : std::false_type {};
template <class T>
struct is_with_diagnostics<with_diagnostics_t<T>> : std::true_type {};

/// Splits a token into where its diagnostics go (or null) and the token to complete with.
template <class Token>
auto split_diagnostics(Token&& token) {
    if constexpr (is_with_diagnostics<std::decay_t<Token>>::value) {
        return std::pair(token.target, std::move(token.token));
    } else {
        return std::pair(static_cast<diagnostics*>(nullptr), std::forward<Token>(token));
    }
}

}  // namespace detail
}  // namespace hl
