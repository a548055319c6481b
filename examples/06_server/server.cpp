// SPDX-License-Identifier: Apache-2.0
#include "server.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstdio>
#include <map>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "hl/runtime/async_host_function.hpp"
#include "server_state.hpp"

namespace web {

namespace {

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto as_tuple = asio::experimental::as_tuple(use_awaitable);

// The user directory behind the async host function LookupUser.
const std::map<std::string, std::string, std::less<>> users = {
    {"ada", "Ada wrote the first program, for an engine that was never built."},
    {"grace", "Grace made the first compiler & found the first bug (a moth)."},
    {"linus", "Linus <torvalds> started a kernel as a hobby."},
    {"barbara", "Barbara designed CLU and the substitution principle."},
};

// `text` as a JSON string.
std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

// fetchUser for the handler scripts: a JSON string naming a user in, the user as a JSON object (or
// null) out. The script's argument is JSON text the host must read as carefully as any request:
// only a plain quoted name is looked up.
std::string fetch_user(std::string_view json) {
    if (json.size() < 2 || json.front() != '"' || json.back() != '"') {
        throw std::invalid_argument("fetchUser takes a user name (a JSON string)");
    }
    const std::string_view name = json.substr(1, json.size() - 2);
    const auto it = users.find(name);
    if (name.find_first_of("\\\"") != std::string_view::npos || it == users.end()) return "null";
    return "{\"name\":" + json_string(it->first) + ",\"about\":" + json_string(it->second) + "}";
}

// A script pool for `handlers`, as large as the main pool, whose scripts reach fetchUser: an async
// host function with the simulated database's latency.
awaitable<hl::script_pool> make_script_pool(const script_handlers& handlers, hl::runtime& rt,
                                            std::chrono::milliseconds latency, hl::pool_options pool_options,
                                            const hl::sandbox_config& config) {
    hl::script_options script;
    script.guest = handlers.guest;
    script.name = handlers.name;
    script.source = handlers.source;
    script.config.metrics = config.metrics;
    script.config.trace = config.trace;
    script.config.call_limits = config.call_limits;
    hl::diagnostics why;
    auto [ec, pool] = co_await hl::script_pool::async_create(
        co_await asio::this_coro::executor, std::move(script),
        [&rt, latency](hl::multi_use_sandbox& sb) {
            auto ex = rt.get_executor();
            hl::register_async_host_function(sb, "fetchUser", ex, [ex, latency](std::string json) -> awaitable<std::string> {
                asio::steady_timer database(ex, latency);
                co_await database.async_wait(use_awaitable);
                co_return fetch_user(json);
            });
        },
        pool_options, hl::with_diagnostics(why, as_tuple));
    if (ec) throw std::system_error(ec, handlers.name + ": " + why.message);
    co_return std::move(pool);
}

// Accepts on the server's executor; each socket is made on the next worker's io_context, and its
// connection runs there.
awaitable<void> accept_loop(std::shared_ptr<server_state> state, std::shared_ptr<asio::ip::tcp::acceptor> acceptor) {
    struct done {
        server_state& state;
        ~done() { state.accepting = false; }
    } mark{*state};
    for (std::size_t next = 0; !state->stopped; ++next) {
        const asio::any_io_executor worker = state->rt.get_executor(next % state->rt.size());
        auto [ec, socket] = co_await acceptor->async_accept(worker, as_tuple);
        if (ec == asio::error::operation_aborted || state->stopped) co_return;
        if (ec) {  // out of descriptors, say: back off briefly rather than spin
            asio::steady_timer pause(state->ex, 10ms);
            co_await pause.async_wait(as_tuple);
            continue;
        }
        ++state->counters.connections;
        if (state->counters.open_connections >= state->options.max_connections) {
            ++state->counters.rejected_connections;
            const std::string busy = format_response(503, "text/plain", "too many connections\n", false, "Retry-After: 1\r\n");
            std::error_code ignored;
            asio::write(socket, asio::buffer(busy), ignored);  // best effort, into a fresh socket's buffer
            continue;
        }
        std::error_code ignored;
        socket.set_option(asio::ip::tcp::no_delay(true), ignored);
        run_connection(state, std::move(socket));
    }
}

}  // namespace

awaitable<http_server> http_server::create(std::filesystem::path guest, server_options options,
                                           hl::pool_options pool_options, hl::sandbox_config config) {
    auto ex = co_await asio::this_coro::executor;
    hl::runtime& rt = pool_options.runtime != nullptr ? *pool_options.runtime : hl::runtime::default_runtime();
    pool_options.runtime = &rt;
    const auto latency = options.lookup_latency;
    if (!config.metrics) config.metrics = std::make_shared<hl::metrics>();
    auto metrics = config.metrics;
    if (!config.trace) config.trace = std::make_shared<hl::trace_recorder>();
    auto trace = config.trace;
    auto pool = co_await hl::sandbox_pool::async_create(
        ex, std::move(guest), config,
        [&rt, latency](hl::multi_use_sandbox& sb) {
            // An async host function, on the sandbox's worker (bind runs there): the guest waits
            // without holding the worker, which serves its connections meanwhile.
            auto ex = rt.get_executor();
            hl::register_async_host_function(sb, "LookupUser", ex, [ex, latency](std::string name) -> awaitable<std::string> {
                asio::steady_timer database(ex, latency);
                co_await database.async_wait(use_awaitable);
                const auto it = users.find(name);
                co_return it == users.end() ? std::string() : it->second;
            });
        },
        pool_options);
    auto state = std::make_shared<server_state>(ex, rt, std::move(pool), std::move(options), std::move(metrics),
                                                std::move(trace));
    if (state->options.javascript) {
        state->javascript = co_await make_script_pool(*state->options.javascript, rt, latency, pool_options, config);
    }
    if (state->options.lua) {
        state->lua = co_await make_script_pool(*state->options.lua, rt, latency, pool_options, config);
    }
    co_return http_server(state, std::make_shared<asio::ip::tcp::acceptor>(ex, state->options.endpoint));
}

http_server::~http_server() {
    if (!state_) return;
    state_->stopped = true;
    std::error_code ignored;
    acceptor_->close(ignored);
    state_->close_all();
    state_->pool.close();
    state_->javascript.close();
    state_->lua.close();
}

void http_server::start() {
    state_->accepting = true;
    asio::co_spawn(state_->ex, accept_loop(state_, acceptor_), asio::detached);
}

awaitable<void> http_server::shutdown() {
    auto state = state_;
    state->stopped = true;
    std::error_code ignored;
    acceptor_->close(ignored);
    state->close_all();
    // Each connection finishes its call (now interrupted) and leaves. The accept loop sees
    // `stopped` before it makes another connection; its end is awaited so that nothing of the
    // server's runs on the runtime once this completes.
    while (state->accepting || state->any_open()) {
        asio::steady_timer tick(state->ex, 1ms);
        co_await tick.async_wait(use_awaitable);
    }
    for (hl::sandbox_pool* pool : {&state->pool, &state->javascript.pool(), &state->lua.pool()}) {
        if (!*pool) continue;
        co_await pool->async_drain();  // the last tasks' restores run
        pool->close();
        co_await pool->async_drain();
    }
}

std::uint16_t http_server::port() const { return acceptor_->local_endpoint().port(); }
std::size_t http_server::workers() const { return state_->rt.size(); }
server_stats http_server::stats() const { return state_->stats(); }
hl::pool_stats http_server::pool_stats() const { return state_->pool.stats(); }
hl::metrics::values http_server::guest_metrics() const { return state_->metrics->read(); }
const server_options& http_server::options() const { return state_->options; }

}  // namespace web
