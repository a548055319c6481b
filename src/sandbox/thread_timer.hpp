// SPDX-License-Identifier: Apache-2.0
// The one POSIX timer per thread that ends slices and enforces deadlines: however many sandboxes a
// thread drives, it owns one timer, created on first use and deleted when the thread exits.
#pragma once

#include <cstdint>

namespace hl::detail::thread_timer {

/// Arms the calling thread's timer to send `signal` to this thread at `expiry` (CLOCK_MONOTONIC
/// nanoseconds; a time already past fires at once), then every millisecond until stop_repeating(),
/// the next arm() or a disarm() (none on a dedicated thread): a kick that a guest did not see is
/// sent again. Replaces any earlier arming, except on a dedicated thread (set_dedicated()), where an
/// arming already pending for `expiry` or earlier is left to fire: whoever relied on it re-arms then
/// (see covers()).
/// Throws std::system_error when the kernel refuses a timer.
void arm(int signal, std::int64_t expiry);

/// Disarms it, if it exists; on a dedicated thread, leaves it be.
void disarm() noexcept;

/// True if an arming is pending that goes off at `expiry` or earlier, to this thread.
bool covers(std::int64_t expiry) noexcept;

/// From the thread's signal handler, for the timer's signal: the pending arming is over if it was
/// due by `now` (a signal of an earlier, replaced arming finds the newer one still pending).
void expired(std::int64_t now) noexcept;

/// Once no guest on the thread still has to be kicked (from the signal handler, or when a call's
/// loop has seen its timer go off): ends the repetition of an arming that went off, unless a newer
/// arming is pending. Async-signal-safe; on a dedicated thread too.
void stop_repeating() noexcept;

/// For a thread that exists to run guest calls back to back (a scheduler's worker): calls arm the
/// timer only when no earlier arming is pending, and leave it running when they end, so that short
/// calls make no timer system call at all. A stray expiry costs the guest that runs then one exit,
/// or a blocking system call of the thread that the kernel does not restart an EINTR. Off by
/// default; the calling thread only.
/// Turning it off disarms the timer.
void set_dedicated(bool on) noexcept;
bool dedicated() noexcept;

/// The interrupt signal a dedicated thread has unblocked for good (0 for none), so that its calls
/// need not look at the signal mask. Any change of dedication forgets it: an ordinary thread may
/// block the signal again. Whoever blocks it again on a dedicated thread must forget it too.
int kept_unblocked() noexcept;
void keep_unblocked(int signal) noexcept;

}  // namespace hl::detail::thread_timer
