// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hl {

/// A snapshot of a pool's state. size counts idle, in-use and coming sandboxes; recycling counts
/// restores queued and not yet run (each runs ahead of its sandbox's next operation).
/// latency_us[i] counts pool calls that took [2^i, 2^(i+1)) us (the last bucket: everything longer).
struct pool_stats {
    std::size_t size = 0, idle = 0, in_use = 0, recycling = 0, waiters = 0;
    std::uint64_t acquired = 0, restores = 0, replacements = 0, failures = 0;
    std::array<std::uint64_t, 24> latency_us{};
};

}  // namespace hl
