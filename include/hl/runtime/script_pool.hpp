// SPDX-License-Identifier: Apache-2.0
// Untrusted scripts per request: a sandbox_pool over a script engine guest (JavaScript on Debian's
// Duktape, Lua 5.4), with the script loaded once and every request served from that snapshot.
//
//   hl::script_options o;
//   o.guest = "/path/to/jsguest.elf";
//   o.name = "handlers.js";
//   o.source = read_file("handlers.js");
//   auto scripts = co_await hl::script_pool::async_create(ex, std::move(o), {}, {.max_size = 8});
//   std::string reply = co_await scripts.async_call("transform", R"({"id": 7})");
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "hl/runtime/sandbox_pool.hpp"

namespace hl {

/// What a script_pool runs.
struct script_options {
    // Not an aggregate: GCC 12 destroys an aggregate temporary with non-trivial members twice when
    // it is an argument of a co_await expression (see sandbox_config).
    script_options() noexcept {}

    /// The engine guest, which decides the language: the project builds jsguest.elf (JavaScript on
    /// Duktape 2.7: ECMAScript 5.1 with parts of ES2015) and luaguest.elf (Lua 5.4 with lua-cjson).
    /// Both follow one contract (docs/DESIGN.md, "Script guests"): Load(name, source),
    /// Call(function, json) -> json, Eval(expression) -> json.
    std::filesystem::path guest;
    /// The script's name in error messages and stack traces.
    std::string name = "script";
    /// The script. Its top level runs once, when the pool is created, with the host functions of
    /// `bind` registered; what it defines is in every request's sandbox.
    std::string source;
    /// The engines want more than the sandbox defaults: heap 16 MiB, stack 4 MiB (so that Duktape's
    /// recursion limits in its compiler, JSON and regular expressions come before the stack's end;
    /// only the pages a request touches cost memory and restore time), buffers 64 KiB (they bound a
    /// request's JSON and its reply).
    sandbox_config config = default_config();

    static sandbox_config default_config();
};

/// Calls into a script by function name, with one JSON value in and one JSON value out, each call
/// in a pooled sandbox restored to the snapshot taken right after the script was loaded: a request
/// pays neither engine start nor compilation and sees nothing of any earlier request.
///
/// A script reaches the host only through `host.<name>(value)`, which calls the host function
/// `<name>` registered by `bind` with one std::string (the value as JSON) and takes its string
/// result as JSON: `sb.register_host_function("fetchUser", [](std::string id) { ... return json; })`,
/// or an async host function. A script's own failure completes with errc::guest_error and the
/// engine's message and stack (hl::with_diagnostics()); a script that runs out of heap with
/// errc::out_of_memory; one that loops with errc::timed_out or errc::cpu_budget_exceeded when the
/// call has limits (pool_options::call_limits, or async_call_for()). Each request's sandbox is
/// restored afterwards whatever happened.
///
/// Move-only; thread-safety and cancellation as sandbox_pool, whose stats() and drain it forwards.
class script_pool {
public:
    using executor_type = asio::any_io_executor;
    using bind_function = std::function<void(multi_use_sandbox&)>;

    script_pool() = default;

    /// Starts the engine, loads `options.source` into it, snapshots it and starts the pool
    /// (pool_options as sandbox_pool's). A script that does not compile or whose top level throws
    /// completes with errc::guest_error and the engine's message. Completes with
    /// void(std::error_code, script_pool).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, script_options options, bind_function bind, pool_options pool,
                             Token&& token = {});

    /// Calls the script's global function `function` with `json` (JSON text; "null" for none) as
    /// its one argument. Completes with void(std::error_code, std::string): the result as JSON
    /// (undefined or nil read as null).
    template <class Token = asio::use_awaitable_t<>>
    auto async_call(std::string_view function, std::string_view json, Token&& token = {}) {
        return pool_.async_call<std::string>("Call", std::string(function), std::string(json),
                                             std::forward<Token>(token));
    }
    /// As async_call(), within `limits` (hl::call_limits; zero fields take the pool's defaults).
    template <class Token = asio::use_awaitable_t<>>
    auto async_call_for(const call_limits& limits, std::string_view function, std::string_view json,
                        Token&& token = {}) {
        return pool_.async_call_for<std::string>(limits, "Call", std::string(function), std::string(json),
                                                 std::forward<Token>(token));
    }
    /// The value of a JavaScript or Lua expression, as JSON, in a fresh request's sandbox.
    template <class Token = asio::use_awaitable_t<>>
    auto async_eval(std::string_view expression, Token&& token = {}) {
        return pool_.async_call<std::string>("Eval", std::string(expression), std::forward<Token>(token));
    }

    pool_stats stats() const { return pool_.stats(); }
    template <class Token = asio::use_awaitable_t<>>
    auto async_drain(Token&& token = {}) {
        return pool_.async_drain(std::forward<Token>(token));
    }
    void close() { pool_.close(); }
    /// The pool underneath, for leases (several calls in one sandbox) and the rest of its API.
    sandbox_pool& pool() noexcept { return pool_; }
    executor_type get_executor() const noexcept { return pool_.get_executor(); }
    explicit operator bool() const noexcept { return static_cast<bool>(pool_); }

private:
    explicit script_pool(sandbox_pool pool) noexcept : pool_(std::move(pool)) {}

    using created_function = std::function<void(std::error_code, std::string, sandbox_pool)>;
    static void create(executor_type ex, script_options options, bind_function bind, pool_options pool,
                       created_function done);

    sandbox_pool pool_;
};

template <class Token>
auto script_pool::async_create(executor_type ex, script_options options, bind_function bind, pool_options pool,
                               Token&& token) {
    auto [diag, inner] = detail::split_diagnostics(std::forward<Token>(token));
    return asio::async_initiate<decltype(inner), void(std::error_code, script_pool)>(
        [diag = diag](auto handler, executor_type ex, script_options options, bind_function bind, pool_options pool) {
            using done_type = detail::completion<decltype(handler)>;
            auto done = std::make_shared<done_type>(std::move(handler), ex, diag);
            create(ex, std::move(options), std::move(bind), pool,
                   [done](std::error_code ec, std::string message, sandbox_pool created) {
                       done->complete(ec, std::move(message), script_pool(std::move(created)));
                   });
        },
        inner, std::move(ex), std::move(options), std::move(bind), pool);
}

}  // namespace hl
