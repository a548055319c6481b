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

/// Disarms it, if it exists (not on a lazy thread, see set_lazy()).
void disarm() noexcept;

/// From the signal handler: the timer went off, nothing is armed any more.
void fired() noexcept;
/// Whether an arming is pending.
bool armed() noexcept;

/// For a scheduler's own threads: keep the timer armed between calls and skip an arming later than
/// the pending one. A stray expiry then costs one spurious exit of whatever guest runs (which re-arms
/// for itself), or an EINTR in a blocking system call of the thread, which such a thread tolerates.
void set_lazy(bool on) noexcept;

}  // namespace hl::detail::thread_timer
