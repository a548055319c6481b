// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "hl/call_limits.hpp"

namespace hl {

/// A snapshot of a pool's state. size counts idle, in-use and coming sandboxes; recycling counts
/// restores queued and not yet run (each runs ahead of its sandbox's next operation).
/// latency_us[i] counts pool calls that took [2^i, 2^(i+1)) us (the last bucket: everything longer).
/// usage adds up what the pool's calls (sandbox_pool::async_call, not calls through a lease) cost
/// in their sandboxes: one call each, its exits, host and system calls, and its CPU time where it
/// was measured (a CPU budget, or sandbox_config::measure_cpu_time).
struct pool_stats {
    std::size_t size = 0, idle = 0, in_use = 0, recycling = 0, waiters = 0;
    std::uint64_t acquired = 0, restores = 0, replacements = 0, failures = 0;
    std::array<std::uint64_t, 24> latency_us{};
    call_usage usage;
};

}  // namespace hl
