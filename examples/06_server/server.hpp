// SPDX-License-Identifier: Apache-2.0
// An HTTP/1.1 server whose requests run guest functions in pooled sandboxes:
//
//   POST /call/<Function>   calls the guest's <Function> with the body; 200 with its result
//   POST /js/<function>     calls <function> of the JavaScript handlers (--js) with the body as JSON;
//                           200 with its result as JSON (and /lua/<function> for the Lua handlers)
//   GET  /stats             server and pool counters, and the worker serving this connection, as JSON
//   GET  /metrics           the guests' calls (hl::metrics), the pool's and the server's counters, as Prometheus text
//   POST /trace?calls=N     records the next N guest calls (hl::trace_recorder; default 100)
//   GET  /trace             what was recorded, as Chrome trace-event JSON (Perfetto, chrome://tracing)
//   GET  /                  what the server offers
//
// Each call has a deadline (waiting for a sandbox plus running the guest). A call that runs past it
// is interrupted and answered 504; a client that disconnects mid-call interrupts its guest too.
// The pool's full wait queue answers 503; unknown functions, malformed requests and oversized
// bodies get 4xx answers. Nothing a client or a guest does stops the server.
//
// Each connection runs on one worker of an hl::runtime, in turn, and so does the pool's sandboxes: a
// request's guest call prefers a sandbox of its connection's worker and then runs right there.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "http.hpp"
#include "hl/metrics.hpp"
#include "hl/runtime/sandbox_pool.hpp"
#include "hl/runtime/script_pool.hpp"

namespace web {

/// A handler script served at /js/<function> or /lua/<function> (hl::script_pool).
struct script_handlers {
    std::filesystem::path guest;  ///< the engine: jsguest.elf or luaguest.elf
    std::string name;             ///< the script's name in errors
    std::string source;
};

struct server_options {
    asio::ip::tcp::endpoint endpoint{asio::ip::address_v4::loopback(), 8080};  ///< port 0: any free port
    std::chrono::milliseconds deadline{1000};         ///< per call: waiting for a sandbox plus the guest call
    std::chrono::milliseconds request_timeout{5000};  ///< to receive a whole request (else 408)
    std::chrono::milliseconds write_timeout{5000};    ///< to send a response (else the connection closes)
    std::chrono::milliseconds lookup_latency{1};      ///< the simulated database behind LookupUser
    std::size_t max_connections = 1024;               ///< beyond this, new connections get 503
    http_limits limits;
    std::optional<script_handlers> javascript;  ///< served at /js/<function>
    std::optional<script_handlers> lua;         ///< served at /lua/<function>
};

/// Counters, readable from any thread.
struct server_stats {
    std::uint64_t connections = 0, rejected_connections = 0, requests = 0;
    std::uint64_t status_2xx = 0, status_4xx = 0, status_5xx = 0;
    std::uint64_t deadline_cancels = 0;    ///< calls stopped by their deadline (504, or 503 in the queue)
    std::uint64_t disconnect_cancels = 0;  ///< calls stopped because their client went away
    std::uint64_t open_connections = 0;
};

struct server_state;

/// The server: a handle on state that its connections share, so it may be destroyed before they
/// finish. It accepts on the executor it was created with, which must not run handlers
/// concurrently (an io_context run by one thread, or a strand); each accepted connection goes to
/// the next worker of the pool's runtime (pool_options::runtime, else hl::runtime::default_runtime())
/// and runs there. Keep that runtime alive until shutdown() has completed.
class http_server {
public:
    /// Creates the pool (guest `guest`, with the host function LookupUser) on the runtime, a script
    /// pool of the same size for each handler script (whose scripts reach the host function
    /// fetchUser(name), JSON in and out), and binds the listening socket. Throws std::system_error
    /// if any of it fails; a script that does not load, with the engine's message.
    static asio::awaitable<http_server> create(std::filesystem::path guest, server_options options,
                                               hl::pool_options pool_options, hl::sandbox_config config = {});
    http_server() = default;  ///< empty; only assign to it
    http_server(http_server&&) noexcept = default;
    http_server& operator=(http_server&&) noexcept = default;
    ~http_server();

    /// Starts accepting connections.
    void start();
    /// Stops accepting, closes every connection (interrupting their calls), waits until the
    /// connections are gone and the pool's last restores have run, then closes the pool. Call it
    /// on the executor the server was created with.
    asio::awaitable<void> shutdown();

    std::uint16_t port() const;
    /// The workers the connections are spread over.
    std::size_t workers() const;
    server_stats stats() const;
    hl::pool_stats pool_stats() const;
    /// What the pool's sandboxes recorded (hl::metrics): calls by outcome, durations, CPU time.
    hl::metrics::values guest_metrics() const;
    const server_options& options() const;

private:
    http_server(std::shared_ptr<server_state> state, std::shared_ptr<asio::ip::tcp::acceptor> acceptor)
        : state_(std::move(state)), acceptor_(std::move(acceptor)) {}
    std::shared_ptr<server_state> state_;
    std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;  // on the creating executor, with the accept loop
};

}  // namespace web
