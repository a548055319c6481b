// SPDX-License-Identifier: Apache-2.0
// One client connection of the server, on its worker: reading requests, routing them, calling the
// guest, answering.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstdio>
#include <optional>
#include <vector>

#include "server_state.hpp"

namespace web {

namespace {

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto as_tuple = asio::experimental::as_tuple(use_awaitable);

struct response {
    int status = 200;
    std::string body;
    std::string extra_headers;
    std::string content_type = "text/plain; charset=utf-8";
};

response text(int status, std::string body, std::string extra_headers = {}) {
    if (!body.empty() && body.back() != '\n') body += '\n';
    return {status, std::move(body), std::move(extra_headers)};
}

bool valid_function_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    }
    return true;
}

// What a failed guest call means to an HTTP client. `what` is the exception's what(): the library's
// message, then ": " and the error code's generic description, which the client does not need.
response call_failed(std::error_code ec, std::string_view function, std::string_view what) {
    if (ec.category() != hl::error_category()) {  // the host's own failure: the operator gets the details, not the client
        std::fprintf(stderr, "06_server: calling %.*s failed on the host: %.*s\n", static_cast<int>(function.size()),
                     function.data(), static_cast<int>(what.size()), what.data());
        return text(500, "internal error");
    }
    const std::string suffix = ": " + ec.message();
    if (what.ends_with(suffix)) what.remove_suffix(suffix.size());
    const std::string message(what);
    switch (static_cast<hl::errc>(ec.value())) {
    case hl::errc::guest_error: return text(422, message);
    case hl::errc::unknown_function: return text(404, "the guest has no function named " + std::string(function));
    case hl::errc::parameter_mismatch:
    case hl::errc::return_type_mismatch:
        return text(400, std::string(function) + " does not take and return a string, so it cannot be called over HTTP");
    case hl::errc::argument_too_large: return text(413, "the body does not fit the sandbox's input buffer");
    case hl::errc::cpu_budget_exceeded:
    case hl::errc::timed_out: return text(504, std::string(function) + " was stopped: " + message);
    case hl::errc::guest_aborted:
    case hl::errc::guest_fault:
    case hl::errc::stack_overflow:
    case hl::errc::out_of_memory:
    case hl::errc::protocol_error:
    case hl::errc::result_too_large: return text(500, "the guest failed: " + message);
    default: return text(500, "the call failed: " + message);
    }
}

// Closes gracefully: after a response with Connection: close the client may still be sending (an
// oversized body, more pipelined requests). Closing a socket with unread input sends a reset, and
// the client may lose the response, so shut down the sending side and read until the client closes,
// for at most a second and a megabyte.
awaitable<void> linger_close(asio::ip::tcp::socket& socket) {
    using namespace asio::experimental::awaitable_operators;
    std::error_code ignored;
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    auto drain = [&socket]() -> awaitable<void> {
        char sink[16384];
        for (std::size_t total = 0; total < (1u << 20);) {
            auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), as_tuple);
            if (ec) co_return;
            total += n;
        }
    };
    asio::steady_timer limit(socket.get_executor(), 1s);
    if (socket.is_open()) co_await (drain() || limit.async_wait(as_tuple));
    socket.close(ignored);
}

}  // namespace

// One client connection: reads requests one at a time (pipelined bytes wait in `pending_`), answers
// each, and closes on error, on Connection: close, or when a timeout fires.
class connection : public std::enable_shared_from_this<connection> {
public:
    connection(std::shared_ptr<server_state> state, asio::ip::tcp::socket socket)
        : state_(std::move(state)), socket_(std::move(socket)), timer_(socket_.get_executor()),
          reader_(message_reader::kind::request, state_->options.limits) {
        ++state_->counters.open_connections;
    }
    ~connection() {
        state_->closed(this);
        --state_->counters.open_connections;
    }

    asio::any_io_executor executor() { return socket_.get_executor(); }

    awaitable<void> run() {
        using namespace asio::experimental::awaitable_operators;
        co_await (serve_guarded() || watchdog());
        co_await linger_close(socket_);
    }

    /// On the connection's executor.
    void close() {
        std::error_code ignored;
        socket_.close(ignored);
        parked_.cancel();
    }

private:
    using clock = std::chrono::steady_clock;

    // serve() must end for the watchdog to be cancelled; it only throws when memory runs out.
    awaitable<void> serve_guarded() {
        try {
            co_await serve();
        } catch (const std::exception&) {
        }
    }

    awaitable<void> serve() {
        for (;;) {
            reader_.reset();
            arm(state_->options.request_timeout);
            const bool got = co_await read_request();
            if (reader_.status() == message_reader::state::failed) {
                co_await send(text(reader_.error_status(), reader_.error_text()), false, false);
                co_return;
            }
            if (!got) {  // a timeout with part of a request gets an answer; an idle connection just closes
                if (timed_out_ && reader_.started()) co_await send(text(408, "the request did not arrive in time"), false, false);
                co_return;
            }
            ++state_->counters.requests;
            http_message& request = reader_.message();
            arm(clock::duration::max());  // the guest call has its own deadline
            std::optional<response> answer = co_await route(request);
            if (!answer) co_return;  // the client went away during the call
            const bool keep_alive = request.keep_alive && !state_->stopped;
            if (!co_await send(std::move(*answer), keep_alive, request.method == "HEAD") || !keep_alive) co_return;
        }
    }

    // Reads until the current request is complete or failed. False: the connection ended first.
    awaitable<bool> read_request() {
        bool continue_sent = false;
        for (;;) {
            if (!pending_.empty()) {
                pending_.erase(0, reader_.feed(pending_));
                if (reader_.status() == message_reader::state::complete || reader_.status() == message_reader::state::failed) {
                    co_return true;
                }
            }
            if (reader_.status() == message_reader::state::headers_done && reader_.message().expect_continue && !continue_sent) {
                continue_sent = true;
                constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
                auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(go_on), as_tuple);
                if (ec) co_return false;
            }
            char chunk[8192];
            auto [ec, n] = co_await socket_.async_read_some(asio::buffer(chunk), as_tuple);
            if (ec == asio::error::eof) {
                reader_.feed_eof();
                co_return reader_.status() == message_reader::state::complete || reader_.status() == message_reader::state::failed;
            }
            if (ec) co_return false;
            pending_.append(chunk, n);
        }
    }

    // A response to HEAD has the headers of the one to GET, and no body.
    awaitable<bool> send(response r, bool keep_alive, bool head_only) {
        const int status = r.status;
        if (status >= 500) ++state_->counters.status_5xx;
        else if (status >= 400) ++state_->counters.status_4xx;
        else ++state_->counters.status_2xx;
        arm(state_->options.write_timeout);
        std::string bytes = format_response(status, r.content_type, r.body, keep_alive, r.extra_headers);
        if (head_only) bytes.resize(bytes.size() - r.body.size());
        auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(bytes), as_tuple);
        co_return !ec;
    }

    // /js/<function> and /lua/<function>: the handler scripts' pool, and the function.
    struct script_route {
        hl::script_pool* scripts;
        const char* language;
        std::string_view function;
    };
    std::optional<script_route> script_route_of(std::string_view path) {
        if (path.starts_with("/js/")) return script_route{&state_->javascript, "JavaScript", path.substr(4)};
        if (path.starts_with("/lua/")) return script_route{&state_->lua, "Lua", path.substr(5)};
        return std::nullopt;
    }

    awaitable<std::optional<response>> route(http_message& request) {
        std::string_view path = request.target;
        path = path.substr(0, path.find('?'));
        constexpr std::string_view call_prefix = "/call/";
        if (path.starts_with(call_prefix)) {
            if (request.method != "POST") co_return text(405, "use POST to call a guest function", "Allow: POST\r\n");
            const std::string_view function = path.substr(call_prefix.size());
            if (!valid_function_name(function)) co_return text(404, "not a guest function name: " + std::string(function));
            co_return co_await call_guest(state_->pool, std::string(function), std::move(request.body), false);
        }
        if (const auto route = script_route_of(path)) {
            if (!*route->scripts) co_return text(404, std::string("no ") + route->language + " handlers are loaded on this server");
            if (request.method != "POST") co_return text(405, "use POST to call a handler", "Allow: POST\r\n");
            if (!valid_function_name(route->function)) co_return text(404, "not a handler name: " + std::string(route->function));
            co_return co_await call_guest(route->scripts->pool(), std::string(route->function), std::move(request.body), true);
        }
        if (path == "/trace") {
            if (request.method == "POST") co_return start_trace(request.target);
            if (request.method != "GET" && request.method != "HEAD") {
                co_return text(405, "GET the trace, or POST /trace?calls=N to record the next N calls",
                               "Allow: GET, HEAD, POST\r\n");
            }
            co_return response{200, state_->trace->chrome_json(), {}, "application/json"};
        }
        if (path == "/metrics") {
            if (request.method != "GET" && request.method != "HEAD") co_return text(405, "use GET here", "Allow: GET, HEAD\r\n");
            co_return metrics_text();
        }
        if (path == "/stats" || path == "/") {
            if (request.method != "GET" && request.method != "HEAD") co_return text(405, "use GET here", "Allow: GET, HEAD\r\n");
            if (path == "/") {
                co_return text(200, "POST /call/<Function> with the argument as the body: Sha256, Render, ValidateJson, "
                                    "Profile (an async host function), Runaway (stopped by the deadline), Crash\n"
                                    "POST /js/<function> (/lua/<function>) with a JSON body: the handler scripts given with --js "
                                    "(--lua), JSON back\n"
                                    "GET /stats: counters\n"
                                    "GET /metrics: the same and the guests', in Prometheus's text format\n"
                                    "POST /trace?calls=N, then GET /trace: the next N guest calls as Chrome trace JSON");
            }
            co_return stats_json();
        }
        co_return text(404, "no such resource: " + std::string(path));
    }

    // Runs `function` in a pooled sandbox, racing the deadline and the client's departure: whichever
    // finishes first cancels the others, and a cancelled call interrupts its guest. The timer's wait
    // completes as a tuple: cancelled, as it is on nearly every request, it would throw otherwise.
    // A handler script's function (`script`) is called through its engine's Call, with the body as its
    // JSON argument, and answers JSON.
    awaitable<std::optional<response>> call_guest(hl::sandbox_pool& pool, std::string function, std::string body,
                                                  bool script) {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer deadline(socket_.get_executor(), state_->options.deadline);
        in_guest_ = false;
        auto outcome =
            co_await (invoke(pool, function, std::move(body), script) || deadline.async_wait(as_tuple) || client_gone());
        switch (outcome.index()) {
        case 0: co_return std::move(std::get<0>(outcome));
        case 1:
            ++state_->counters.deadline_cancels;
            if (!in_guest_) co_return text(503, "no sandbox became free within the deadline", "Retry-After: 1\r\n");
            co_return text(504, function + " ran past the deadline of " + std::to_string(state_->options.deadline.count()) +
                                    " ms and was stopped");
        default: ++state_->counters.disconnect_cancels; co_return std::nullopt;
        }
    }

    awaitable<response> invoke(hl::sandbox_pool& pool, const std::string& function, std::string body, bool script) {
        hl::diagnostics why;
        auto [ec, lease] = co_await pool.async_acquire(hl::with_diagnostics(why, as_tuple));
        if (ec == hl::errc::pool_busy || ec == hl::errc::timed_out) {
            co_return text(503, "all sandboxes are busy and the queue is full; try again", "Retry-After: 1\r\n");
        }
        if (ec) co_return text(503, "no sandbox: " + (why.message.empty() ? ec.message() : why.message));
        // The deadline may have fired while this completion was on its way: then the guest never ran.
        if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) co_return response{};
        in_guest_ = true;
        if (script) {
            auto [call_ec, result] = co_await lease.async_call<std::string>("Call", function, std::move(body),
                                                                            hl::with_diagnostics(why, as_tuple));
            if (call_ec) co_return call_failed(call_ec, function, why.message);
            co_return response{200, std::move(result), {}, "application/json"};
        }
        auto [call_ec, result] = co_await lease.async_call<std::string>(function, std::move(body), hl::with_diagnostics(why, as_tuple));
        if (call_ec) co_return call_failed(call_ec, function, why.message);
        co_return response{200, std::move(result), {}};
    }

    // Completes when the client closes or resets the connection, or the server stops. Bytes it
    // sends meanwhile (pipelined requests) are kept for later, up to one request of the largest
    // size; beyond that, reading pauses and only the server's stop or the deadline ends the call.
    // Cancelled (the call finished first), it completes too, but by then it has lost the race.
    awaitable<void> client_gone() {
        char chunk[4096];
        const std::size_t max_pending = state_->options.limits.max_header_bytes + state_->options.limits.max_body_bytes;
        for (;;) {
            if (pending_.size() > max_pending) {
                parked_.expires_at(clock::time_point::max());
                co_await parked_.async_wait(as_tuple);  // cancelled by close() or by the race's end
                co_return;
            }
            auto [ec, n] = co_await socket_.async_read_some(asio::buffer(chunk), as_tuple);
            if (ec) co_return;
            pending_.append(chunk, n);
        }
    }

    // POST /trace?calls=N: drops the last trace and records the next N guest calls (default 100,
    // at most 100,000) with hl::trace_recorder; GET /trace then gives them as Chrome trace JSON.
    response start_trace(std::string_view target) {
        std::uint64_t calls = 100;
        if (const auto q = target.find("?calls="); q != std::string_view::npos) {
            const std::string_view digits = target.substr(q + 7);
            calls = 0;
            for (const char ch : digits) {
                if (ch < '0' || ch > '9' || calls > 100'000) return text(400, "calls must be a number from 1 to 100000");
                calls = calls * 10 + static_cast<std::uint64_t>(ch - '0');
            }
            if (calls == 0 || calls > 100'000) return text(400, "calls must be a number from 1 to 100000");
        }
        state_->trace->start(calls);
        return text(200, "recording the next " + std::to_string(calls) + " guest calls; GET /trace for them\n");
    }

    // The sandboxes' metrics (hl::metrics), then the pool's and the server's counters, in the
    // Prometheus text exposition format.
    response metrics_text() {
        const server_stats s = state_->stats();
        const hl::pool_stats p = state_->pool.stats();
        std::string body = state_->metrics->prometheus_text("hyperlight");
        const auto gauge = [&body](const char* name, const char* help, std::uint64_t value) {
            body += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
                    std::to_string(value) + "\n";
        };
        const auto counter = [&body](const char* name, const char* help, std::uint64_t value) {
            body += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
                    std::to_string(value) + "\n";
        };
        gauge("hyperlight_pool_size", "Sandboxes in the pool: idle, in use and coming.", p.size);
        gauge("hyperlight_pool_idle", "Idle sandboxes.", p.idle);
        gauge("hyperlight_pool_in_use", "Sandboxes leased out.", p.in_use);
        gauge("hyperlight_pool_waiters", "Tasks waiting for a sandbox.", p.waiters);
        counter("hyperlight_pool_acquired_total", "Sandboxes handed out.", p.acquired);
        counter("hyperlight_pool_restores_total", "Restores between leases.", p.restores);
        counter("hyperlight_pool_replacements_total", "Sandboxes replaced after a failed restore.", p.replacements);
        counter("hyperlight_pool_failures_total", "Sandboxes the pool could not create.", p.failures);
        counter("server_requests_total", "HTTP requests.", s.requests);
        body += "# HELP server_responses_total HTTP responses by status class.\n"
                "# TYPE server_responses_total counter\n";
        body += "server_responses_total{class=\"2xx\"} " + std::to_string(s.status_2xx) + "\n";
        body += "server_responses_total{class=\"4xx\"} " + std::to_string(s.status_4xx) + "\n";
        body += "server_responses_total{class=\"5xx\"} " + std::to_string(s.status_5xx) + "\n";
        counter("server_deadline_cancels_total", "Calls stopped by the request deadline.", s.deadline_cancels);
        counter("server_disconnect_cancels_total", "Calls stopped because the client left.", s.disconnect_cancels);
        gauge("server_open_connections", "Open connections.", s.open_connections);
        return {200, std::move(body), {}, "text/plain; version=0.0.4"};
    }

    response stats_json() {
        const server_stats s = state_->stats();
        const hl::pool_stats p = state_->pool.stats();
        std::string body = "{\"requests\":" + std::to_string(s.requests) + ",\"status_2xx\":" + std::to_string(s.status_2xx) +
                           ",\"status_4xx\":" + std::to_string(s.status_4xx) + ",\"status_5xx\":" + std::to_string(s.status_5xx) +
                           ",\"deadline_cancels\":" + std::to_string(s.deadline_cancels) +
                           ",\"disconnect_cancels\":" + std::to_string(s.disconnect_cancels) +
                           ",\"open_connections\":" + std::to_string(s.open_connections) +
                           ",\"worker\":" + std::to_string(state_->current_worker()) +
                           ",\"pool\":{\"size\":" + std::to_string(p.size) + ",\"idle\":" + std::to_string(p.idle) +
                           ",\"in_use\":" + std::to_string(p.in_use) + ",\"waiters\":" + std::to_string(p.waiters) +
                           ",\"restores\":" + std::to_string(p.restores) + ",\"replacements\":" + std::to_string(p.replacements) + "}}\n";
        return {200, std::move(body), {}, "application/json"};
    }

    // The watchdog closes in on slow clients: when the armed time passes, it cancels the socket's
    // operations and marks the connection timed out.
    void arm(clock::duration d) {
        timed_out_ = false;
        expiry_ = d == clock::duration::max() ? clock::time_point::max() : clock::now() + d;
        timer_.expires_at(expiry_);  // wakes the watchdog, which re-reads expiry_
    }

    awaitable<void> watchdog() {
        for (;;) {
            co_await timer_.async_wait(as_tuple);
            if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) co_return;
            if (expiry_ <= clock::now()) {
                timed_out_ = true;
                expiry_ = clock::time_point::max();
                timer_.expires_at(expiry_);
                std::error_code ignored;
                socket_.cancel(ignored);
            }
        }
    }

    std::shared_ptr<server_state> state_;
    asio::ip::tcp::socket socket_;
    asio::steady_timer timer_;
    asio::steady_timer parked_{socket_.get_executor()};  // client_gone() waits here when reading pauses
    clock::time_point expiry_ = clock::time_point::max();
    bool timed_out_ = false;
    bool in_guest_ = false;
    message_reader reader_;
    std::string pending_;  // received, not yet parsed
};

void run_connection(std::shared_ptr<server_state> state, asio::ip::tcp::socket socket) {
    auto ex = socket.get_executor();
    auto c = std::make_shared<connection>(state, std::move(socket));
    state->opened(c.get(), c);
    asio::co_spawn(ex, [c]() -> awaitable<void> { co_await c->run(); }, asio::detached);
}

void server_state::close_all() {
    std::vector<std::shared_ptr<connection>> alive;
    {
        std::lock_guard lock(open_mutex);
        for (auto& [c, handle] : open) {
            if (auto strong = handle.lock()) alive.push_back(std::move(strong));
        }
    }
    // The handler holds the connection, so the last reference may go there, on its worker.
    for (auto& c : alive) {
        auto ex = c->executor();
        asio::post(ex, [c = std::move(c)] { c->close(); });
    }
}

}  // namespace web
