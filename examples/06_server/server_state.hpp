// SPDX-License-Identifier: Apache-2.0
// What the server's accept loop and its connections share, and how a connection starts.
#pragma once

#include <asio/ip/tcp.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "hl/metrics.hpp"
#include "hl/trace.hpp"
#include "server.hpp"

namespace web {

class connection;

/// Shared by the accept loop (on `ex`) and the connections (each on its worker): the counters are
/// atomic, the open connections are behind a mutex, and the rest is set before start(). The last
/// reference may go on a worker, so it holds nothing of `ex`'s context (the acceptor is apart).
struct server_state {
    server_state(asio::any_io_executor ex, hl::runtime& rt, hl::sandbox_pool p, server_options o,
                 std::shared_ptr<hl::metrics> m, std::shared_ptr<hl::trace_recorder> t)
        : ex(std::move(ex)),
          rt(rt),
          pool(std::move(p)),
          options(std::move(o)),
          metrics(std::move(m)),
          trace(std::move(t)) {}

    server_stats stats() const {
        return {counters.connections, counters.rejected_connections, counters.requests, counters.status_2xx,
                counters.status_4xx, counters.status_5xx, counters.deadline_cancels, counters.disconnect_cancels,
                counters.open_connections};
    }

    struct counters {
        std::atomic<std::uint64_t> connections{0}, rejected_connections{0}, requests{0};
        std::atomic<std::uint64_t> status_2xx{0}, status_4xx{0}, status_5xx{0};
        std::atomic<std::uint64_t> deadline_cancels{0}, disconnect_cancels{0}, open_connections{0};
    };

    void opened(connection* c, std::weak_ptr<connection> handle) {
        std::lock_guard lock(open_mutex);
        open.emplace(c, std::move(handle));
    }
    void closed(connection* c) {
        std::lock_guard lock(open_mutex);
        open.erase(c);
    }
    bool any_open() {
        std::lock_guard lock(open_mutex);
        return !open.empty();
    }
    // Closes every open connection on its own worker, where its socket is used.
    void close_all();
    // The index of the runtime's worker this thread is, or -1.
    int current_worker() const {
        for (std::size_t i = 0; i < rt.size(); ++i) {
            if (rt.get_executor(i).running_in_this_thread()) return static_cast<int>(i);
        }
        return -1;
    }

    asio::any_io_executor ex;  // accepts here
    hl::runtime& rt;           // connections run on its workers, in turn
    hl::sandbox_pool pool;
    hl::script_pool javascript;  // empty unless options.javascript
    hl::script_pool lua;         // empty unless options.lua
    server_options options;
    std::shared_ptr<hl::metrics> metrics;  // the pool's sandboxes record into it
    std::shared_ptr<hl::trace_recorder> trace;  // and trace into this, once POST /trace starts it
    counters counters;
    std::atomic<bool> stopped{false};
    std::atomic<bool> accepting{false};  // the accept loop is running: shutdown() waits for it too

private:
    std::mutex open_mutex;
    std::unordered_map<connection*, std::weak_ptr<connection>> open;  // each connection removes itself
};

/// Makes the connection of `socket` (whose executor is a worker's), registers it and runs it there.
void run_connection(std::shared_ptr<server_state> state, asio::ip::tcp::socket socket);

}  // namespace web
