// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>

#include "hl/call_limits.hpp"

namespace hl {

class runtime;

/// Sizes and limits of a sandbox_pool.
struct pool_options {
    std::size_t min_size = 1;        ///< created in the background when the pool starts
    std::size_t max_size = 4;        ///< never more sandboxes than this, idle, in use or recycling
    std::size_t max_waiters = 1024;  ///< acquires beyond this fail at once with errc::pool_busy
    std::chrono::nanoseconds acquire_timeout{0};  ///< 0: wait as long as it takes; else errc::timed_out
    hl::runtime* runtime = nullptr;  ///< whose workers the sandboxes are spread over; null: the default
    /// The defaults of the pool's calls (its own and its leases') that set no limits of their own;
    /// they come before the runtime's and the sandbox's (see hl::call_limits). None by default.
    hl::call_limits call_limits{};
};

}  // namespace hl
