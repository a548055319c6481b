// SPDX-License-Identifier: Apache-2.0
// Stopping a running guest from another thread (interrupt_handle::kill), at a deadline, or at the
// end of a time slice.
//
// A call is running from its start to its end (interrupt_state::begin_call/end_call), between the
// slices of a guest_call too. Each stretch of it that the vCPU thread drives (a run() of a
// guest_call, or a whole synchronous call) is a run_frame, and each KVM_RUN inside one is bracketed
// by entering_guest()/left_guest(). A killer sets `cancel`, then kvm_run's immediate_exit, then
// signals the thread if it is in the guest. Either the thread sees immediate_exit when it enters
// KVM_RUN, or the killer sees it in the guest and the signal kicks it out: no kill is lost in between.
// Deadlines and slice ends use one POSIX timer per thread (thread_timer.hpp), armed for the frame
// that runs.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "util/spinlock.hpp"

namespace hl::detail {

struct interrupt_state {
    // Orders killers against call start/end and sandbox teardown. A spinlock: the vCPU thread often
    // reaches the end of a cancelled call while the killer is still inside pthread_kill(), and a
    // futex wake-up there would double the interrupt latency.
    util::spinlock mutex;
    std::atomic<bool> running{false};  // a call has started and not ended
    std::atomic<bool> cancel{false};
    std::atomic<bool> in_guest{false};  // inside KVM_RUN
    std::uint8_t* immediate_exit = nullptr;  // kvm_run's; null once the sandbox is gone
    pthread_t thread{};
    int signal = 0;

    /// Returns whether a call was running. When it finds the call outside KVM_RUN, calls the
    /// call's listener (outside the lock).
    bool kill();

    /// For a caller that knows a call is about to start on this sandbox (the async runtime): the
    /// next call starts cancelled if none is running now; a running one is killed. disarm() takes
    /// it back once that call is over.
    void kill_current_or_next();
    void disarm();

    /// A call starts on the calling thread (consuming a pending kill_current_or_next()), or ends
    /// (dropping its listener).
    void begin_call() noexcept;
    void end_call() noexcept;

    /// What kill() calls while the running call is outside the guest.
    void set_listener(std::function<void()> f);

    bool pending_cancel = false;  // under `mutex`
    std::shared_ptr<const std::function<void()>> listener;  // under `mutex`
};

/// Installs the no-op handler for SIGRTMIN + offset once per process. Throws hl::error
/// (errc::invalid_config) for an offset out of range or a signal the application already handles.
int install_interrupt_signal(int offset);

/// CLOCK_MONOTONIC (steady_clock's clock) in nanoseconds: the time base of deadlines and slices.
std::int64_t monotonic_ns() noexcept;
/// The calling thread's CPU clock in nanoseconds: what CPU-time budgets count. A system call (about
/// 0.5 us here; the vDSO does not serve it).
std::int64_t thread_cpu_ns() noexcept;

/// A CPU-time budget is checked at the earliest moment the thread could have used it up: that many
/// nanoseconds of wall time after the frame started, or after the last check that found some left.
/// A preempted thread uses less than it is given, so a check may find budget left: it looks again
/// when the rest could be gone, but no sooner than this (a few checks, not a storm, on a thread that
/// gets little of its core).
inline constexpr std::int64_t min_budget_check_ns = 20'000;

/// One stretch of a running call on the vCPU thread, between the start of a run() and its return.
/// Frames nest (a host function calling another sandbox on the same thread); the innermost one has
/// the thread's timer, armed at the earlier of `deadline` (monotonic_ns(), 0 for none) and the end
/// of a `slice` of nanoseconds from now (0 for none); popping a frame re-arms it for the one
/// outside. A slice is at least min_slice_ns, and starts again, twice as long, if it is over before
/// the guest ran for a quarter of it: entering and leaving the guest cost tens to hundreds of
/// microseconds under PVM, depending on the day, and a slice shorter than that would end slice
/// after slice with no progress at all (at most max_slice_restarts times, so that a thread that
/// never gets the guest going still serves its other work). The interrupt
/// signal is unblocked for the frame if the thread blocks it. The signal is SA_RESTART: a deadline
/// or slice end that fires while a host function blocks in a restartable system call does not fail
/// it (calls the kernel never restarts, such as poll or nanosleep, still see EINTR). Tens of
/// microseconds go into entering and leaving the guest under PVM; a slice must leave the guest some
/// time beyond that.
///
/// A frame may also have a CPU-time budget: `cpu_left` nanoseconds of the thread's CPU clock (0 for
/// none), checked on the same timer (see min_budget_check_ns). With `measure_cpu` the frame reads
/// the thread's CPU clock at its start, for cpu_used().
inline constexpr std::int64_t min_slice_ns = 50'000;
inline constexpr int max_slice_restarts = 10;

class run_frame {
public:
    /// Throws errc::usage_error when calls nest too deep, std::system_error when the timer fails.
    run_frame(interrupt_state& state, std::int64_t deadline, std::int64_t slice, bool measure_cpu = false,
              std::int64_t cpu_left = 0);
    ~run_frame();
    run_frame(const run_frame&) = delete;
    run_frame& operator=(const run_frame&) = delete;

    void entering_guest() noexcept;
    /// `by_signal`: KVM_RUN returned EINTR (a kick, a timer, a stray signal) rather than at
    /// something the guest did.
    void left_guest(bool by_signal) noexcept;

    enum class reason { none, cancelled, timed_out, over_budget, slice_over };
    /// After KVM_RUN returned EINTR (or before entering it): why the stretch must stop, if it must.
    /// Re-arms immediate_exit when it need not, so a stray signal costs one more KVM_RUN.
    reason stop_reason() noexcept;

    /// The thread's CPU time since the frame started (a read of its CPU clock); 0 unless the frame
    /// measures it.
    std::int64_t cpu_used() const noexcept;

private:
    void pop() noexcept;
    /// When the thread's timer is due for this frame: the earliest of the deadline, the slice's end
    /// and the next budget check (0: never).
    std::int64_t next_expiry() const noexcept;
    /// After the timer went off at `now`: true when the budget is used up; otherwise the next check.
    bool budget_used_up(std::int64_t now) noexcept;

    interrupt_state& state_;
    int depth_;  // this frame's index in the thread's stack
    std::int64_t deadline_;
    std::int64_t slice_;
    std::int64_t slice_end_ = 0;
    bool measure_cpu_;
    std::int64_t cpu_start_ = 0;     // thread_cpu_ns() at the start, when measured
    std::int64_t cpu_end_ = 0;       // thread_cpu_ns() at which the budget is used up; 0: no budget
    std::int64_t budget_check_ = 0;  // monotonic_ns() of the next look at the CPU clock; 0: none
    std::int64_t entered_at_ = 0;  // monotonic_ns() at the last entering_guest(), in a sliced frame
    int restarts_ = 0;
    bool ran_ = false;       // the guest ran in this frame (for a slice: long enough for the slice to count)
    bool armed_ = false;     // this frame set the thread's timer, which may yet go off (or off again)
    bool unblocked_ = false;  // the signal was blocked on this thread; block it again at the end
};

}  // namespace hl::detail
