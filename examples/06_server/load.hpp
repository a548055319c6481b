// SPDX-License-Identifier: Apache-2.0
// A bounded HTTP load generator for 06_server: keep-alive connections on loopback send a fixed
// mix of requests (good ones, and a few that must fail in a known way) and check every answer.
#pragma once

#include <asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace web {

struct load_progress {
    std::uint64_t done = 0, total = 0, errors = 0;
    std::chrono::nanoseconds elapsed{0};
};

struct load_options {
    asio::ip::tcp::endpoint target;
    std::uint64_t requests = 20000;
    std::size_t connections = 16;
    std::uint64_t runaway_every = 1000;  ///< every Nth request calls Runaway (expects 504); 0: never
    bool http_only = false;  ///< every request is GET / (no guest): the HTTP floor to compare with
    bool javascript = false;  ///< the demo's handlers.js is served: the mix includes /js/ requests
    bool lua = false;         ///< the demo's handlers.lua is served: the mix includes /lua/ requests
    std::chrono::milliseconds progress_interval{500};
    std::function<void(const load_progress&)> on_progress;  ///< called on the generator's thread
};

struct load_report {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;  ///< transport failures and answers other than the expected one
    std::map<int, std::uint64_t> statuses;
    std::vector<std::string> error_samples;  ///< the first few errors, described
    std::chrono::nanoseconds elapsed{0};
    double p50_ms = 0, p99_ms = 0, max_ms = 0;
};

/// Sends options.requests requests over options.connections connections, on an io_context of its
/// own run by the calling thread, and returns when all are answered.
load_report run_load(const load_options& options);

}  // namespace web
