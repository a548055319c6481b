// SPDX-License-Identifier: Apache-2.0
// Stopping a running guest from another thread (interrupt_handle::kill) or at a deadline.
//
// The vCPU thread brackets each call with begin_call()/end_call() and each KVM_RUN with
// entering_guest()/left_guest(). A killer sets `cancel`, then kvm_run's immediate_exit, then signals
// the thread if it is in the guest. Either the thread sees immediate_exit when it enters KVM_RUN, or
// the killer sees it in the guest and the signal kicks it out: no kill is lost in between.
#pragma once

#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

#include "util/spinlock.hpp"

namespace hl::detail {

struct interrupt_state {
    // Orders killers against call start/end and sandbox teardown. A spinlock: the vCPU thread often
    // reaches the end of a cancelled call while the killer is still inside pthread_kill(), and a
    // futex wake-up there would double the interrupt latency.
    util::spinlock mutex;
    std::atomic<bool> running{false};
    std::atomic<bool> cancel{false};
    std::atomic<bool> in_guest{false};
    std::uint8_t* immediate_exit = nullptr;  // kvm_run's; null once the sandbox is gone
    pthread_t thread{};
    int signal = 0;

    /// Returns whether a call was running.
    bool kill();

    /// For a caller that knows a call is about to start on this sandbox (the async runtime): the
    /// next call starts cancelled if none is running now; a running one is killed. disarm() takes
    /// it back once that call is over.
    void kill_current_or_next();
    void disarm();

    bool pending_cancel = false;  // under `mutex`
};

/// Installs the no-op handler for SIGRTMIN + offset once per process. Throws hl::error
/// (errc::invalid_config) for an offset out of range or a signal the application already handles.
int install_interrupt_signal(int offset);

/// A POSIX timer that delivers the interrupt signal to one thread: a call's deadline without a
/// thread per call. Created on first use, again when calls move to another thread.
class deadline_timer {
public:
    deadline_timer() = default;
    ~deadline_timer();
    deadline_timer(const deadline_timer&) = delete;
    deadline_timer& operator=(const deadline_timer&) = delete;

    /// Makes sure the timer targets the calling thread; returns the token its signals carry.
    std::uintptr_t prepare(int signal);
    /// Arms it to fire once after `timeout`.
    void start(std::chrono::nanoseconds timeout);
    void disarm() noexcept;

private:
    timer_t id_{};
    bool created_ = false;
    std::uint64_t thread_ = 0;  // serial of the thread it targets
    std::uintptr_t token_ = 0;
};

/// Per-call bookkeeping on the vCPU thread, with an optional deadline. Calls may nest (a host
/// function calling another sandbox on the same thread). The interrupt signal is unblocked for the
/// call if the thread blocks it. Note that, as the signal has no SA_RESTART, a deadline that fires
/// while a host function blocks in a system call makes that call fail with EINTR.
class call_guard {
public:
    call_guard(interrupt_state& state, deadline_timer* timer, std::chrono::nanoseconds timeout);
    ~call_guard();
    call_guard(const call_guard&) = delete;
    call_guard& operator=(const call_guard&) = delete;

    void entering_guest() noexcept;
    void left_guest() noexcept;

    enum class reason { none, cancelled, timed_out };
    /// After KVM_RUN returned EINTR (or before entering it): why the call must stop, if it must.
    /// Re-arms immediate_exit when it need not, so a stray signal costs one more KVM_RUN.
    reason stop_reason() noexcept;

private:
    void end() noexcept;

    interrupt_state& state_;
    deadline_timer* timer_;
    std::atomic<bool> hit_{false};  // set by the signal handler when the deadline fires
    bool unblocked_ = false;       // the signal was blocked on this thread; block it again at the end
};

}  // namespace hl::detail
