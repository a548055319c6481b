// SPDX-License-Identifier: Apache-2.0
// The one POSIX timer per thread that ends slices and enforces deadlines: however many sandboxes a
// thread drives, it owns one timer, created on first use and deleted when the thread exits.
#pragma once

#include <cstdint>

namespace hl::detail::thread_timer {

/// Arms the calling thread's timer to send `signal` to this thread once, at `expiry`
/// (CLOCK_MONOTONIC nanoseconds; a time already past fires at once). Replaces any earlier arming.
/// Throws std::system_error when the kernel refuses a timer.
void arm(int signal, std::int64_t expiry);

/// Disarms it, if it exists.
void disarm() noexcept;

}  // namespace hl::detail::thread_timer
