// SPDX-License-Identifier: Apache-2.0
#include "sandbox/interrupt.hpp"

#include <signal.h>
#include <time.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

#include "hl/error.hpp"
#include "hl/interrupt.hpp"
#include "sandbox/thread_timer.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

std::atomic<std::uint64_t> stale_signals{0};

// What the signal handler may touch on this thread while calls run: a stack, because a host function
// may call into another sandbox on the same thread. Initial-exec TLS: reading it from a signal handler
// must not allocate. Frames are filled before `depth` makes them visible and hidden before they are
// cleared; the signal fences keep the compiler from reordering that.
struct active_call {
    std::uint8_t* immediate_exit = nullptr;
    const std::atomic<bool>* cancel = nullptr;
    std::int64_t expiry = 0;    // when the thread's timer is due for this frame (monotonic_ns), 0: never
    std::int64_t deadline = 0;  // the call's deadline, 0: none
    std::int64_t cpu_end = 0;   // thread_cpu_ns() at which the call's CPU budget is used up, 0: none
    int signal = 0;
    volatile sig_atomic_t timer_hit = 0;
    volatile sig_atomic_t in_guest = 0;
};
constexpr int max_nesting = 8;
struct active_calls {
    active_call frames[max_nesting];
    volatile sig_atomic_t depth = 0;
};
[[gnu::tls_model("initial-exec")]] thread_local active_calls current;

void set_immediate_exit(std::uint8_t* flag, std::uint8_t value) noexcept {
    if (flag != nullptr) __atomic_store_n(flag, value, __ATOMIC_SEQ_CST);
}

void on_signal(int, siginfo_t* info, void*) {
    struct keep_errno {  // for the code the signal interrupted: timer_settime may set it
        int saved = errno;
        ~keep_errno() { errno = saved; }
    } kept;
    const int depth = current.depth;
    if (info->si_code == SI_TIMER) {
        // The thread's one timer: every frame whose time has come stops when its guest runs again.
        // The clock, not the signal, decides: a signal from an earlier arming finds nothing due.
        const std::int64_t now = monotonic_ns();  // clock_gettime is async-signal-safe
        thread_timer::expired(now);
        bool due = false;
        for (int i = 0; i < depth; ++i) {
            active_call& frame = current.frames[i];
            if (frame.expiry != 0 && now >= frame.expiry) {
                frame.timer_hit = 1;
                set_immediate_exit(frame.immediate_exit, 1);
                due = true;
            }
        }
        if (!due) stale_signals.fetch_add(1, std::memory_order_relaxed);
        // The innermost frame, the one that runs a guest, may have relied on this arming (a
        // dedicated thread's, made for an earlier call or an outer frame): with no timer left for
        // it, its next KVM_RUN stops at once, and its loop arms one (run_frame::stop_reason()).
        bool guest_kicked = false;
        if (depth > 0) {
            active_call& inner = current.frames[depth - 1];
            if (inner.expiry != 0 && inner.timer_hit == 0 && !thread_timer::covers(inner.expiry)) {
                set_immediate_exit(inner.immediate_exit, 1);
            }
            guest_kicked = inner.in_guest && inner.expiry != 0 &&
                           (inner.timer_hit != 0 || !thread_timer::covers(inner.expiry));
        }
        // The arming repeats until the guest it kicked has stopped and its loop has seen why (it
        // re-arms or ends its frame then); a host function, which runs outside the guest, is not
        // interrupted again and again.
        if (!guest_kicked) thread_timer::stop_repeating();
        return;
    }
    // A kill: the killer already set immediate_exit; the signal only has to end KVM_RUN.
    if (depth == 0 || !current.frames[depth - 1].in_guest) stale_signals.fetch_add(1, std::memory_order_relaxed);
}

std::mutex install_mutex;
std::uint64_t installed_mask = 0;  // bit n: SIGRTMIN + n

}  // namespace

int install_interrupt_signal(int offset) {
    const int signal = SIGRTMIN + offset;
    if (offset < 0 || signal > SIGRTMAX) {
        throw error(errc::invalid_config,
                    util::strfmt("sandbox_config::interrupt_signal_offset is %d; it must be 0 .. %d", offset,
                                 SIGRTMAX - SIGRTMIN));
    }
    std::lock_guard lock(install_mutex);
    if (installed_mask & (std::uint64_t{1} << offset)) return signal;
    struct sigaction old {};
    if (::sigaction(signal, nullptr, &old) != 0) throw std::system_error(errno, std::system_category(), "sigaction");
    const bool ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_signal;
    if (!ours && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
        throw error(errc::invalid_config,
                    util::strfmt("signal SIGRTMIN+%d already has a handler in this process; choose a free one with "
                                 "sandbox_config::interrupt_signal_offset",
                                 offset));
    }
    struct sigaction action {};
    action.sa_sigaction = on_signal;
    // SA_RESTART: a timer that goes off in another system call of the thread (a host function's, or
    // the event loop's on a runtime worker whose timer outlived its call) restarts it rather than
    // failing it with EINTR. KVM_RUN still stops: KVM ends it with EINTR, which is never restarted.
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (::sigaction(signal, &action, nullptr) != 0) throw std::system_error(errno, std::system_category(), "sigaction");
    installed_mask |= std::uint64_t{1} << offset;
    return signal;
}

namespace {

// Zero is "none".
std::int64_t earlier(std::int64_t a, std::int64_t b) noexcept {
    if (a == 0) return b;
    if (b == 0) return a;
    return a < b ? a : b;
}

}  // namespace

std::int64_t monotonic_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t thread_cpu_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

bool interrupt_state::kill() {
    using clock = std::chrono::steady_clock;
    // Re-sent while the guest keeps running: a signal can land between the vCPU thread's checks.
    // Between kicks, yield rather than sleep: on a busy machine the vCPU thread may share this core.
    for (int kicks = 0; kicks < 100; ++kicks) {
        std::shared_ptr<const std::function<void()>> notify;
        bool outside = false;
        {
            std::lock_guard lock(mutex);
            if (immediate_exit == nullptr || !running.load()) return kicks > 0;
            cancel.store(true);
            set_immediate_exit(immediate_exit, 1);  // seq_cst, like the load below: no fence needed
            if (in_guest.load()) {
                ::pthread_kill(thread, signal);
            } else {
                // It will see immediate_exit before entering again. A scheduler that holds the call
                // between slices, or waits for a host call, hears of it now.
                notify = listener;
                outside = true;
            }
        }
        if (outside) {
            try {
                if (notify) (*notify)();
            } catch (...) {
                // Its contract says it does not throw; a kill must not fail because it did.
            }
            return true;
        }
        const auto give_up = clock::now() + std::chrono::microseconds(kicks < 10 ? 200 : 2000);
        while (clock::now() < give_up) {
            if (!running.load() || !in_guest.load()) return true;
            std::this_thread::yield();
        }
    }
    return true;
}

void interrupt_state::kill_current_or_next() {
    {
        std::lock_guard lock(mutex);
        if (immediate_exit == nullptr) return;
        if (!running.load()) {
            pending_cancel = true;
            return;
        }
    }
    kill();
}

void interrupt_state::disarm() {
    std::lock_guard lock(mutex);
    pending_cancel = false;
}

void interrupt_state::begin_call() noexcept {
    std::lock_guard lock(mutex);
    const bool cancelled = std::exchange(pending_cancel, false);
    cancel.store(cancelled);
    set_immediate_exit(immediate_exit, cancelled ? 1 : 0);
    thread = ::pthread_self();
    running.store(true);
}

void interrupt_state::end_call() noexcept {
    std::shared_ptr<const std::function<void()>> dropped;  // destroyed outside the spinlock
    std::lock_guard lock(mutex);
    running.store(false);
    dropped = std::move(listener);
}

void interrupt_state::set_listener(std::function<void()> f) {
    auto fresh = f ? std::make_shared<const std::function<void()>>(std::move(f)) : nullptr;
    std::lock_guard lock(mutex);
    if (running.load()) std::swap(listener, fresh);
}

run_frame::run_frame(interrupt_state& state, std::int64_t deadline, std::int64_t slice, bool measure_cpu,
                     std::int64_t cpu_left)
    : state_(state),
      depth_(current.depth),
      deadline_(deadline),
      slice_(slice > 0 ? std::max(slice, min_slice_ns) : 0),
      measure_cpu_(measure_cpu || cpu_left > 0) {
    if (depth_ >= max_nesting) {
        throw error(errc::usage_error,
                    util::strfmt("guest calls nest more than %d deep through host functions on one thread", max_nesting));
    }
    const std::int64_t now = slice_ != 0 || cpu_left > 0 ? monotonic_ns() : 0;
    if (slice_ != 0) slice_end_ = now + slice_;
    if (measure_cpu_) cpu_start_ = thread_cpu_ns();
    if (cpu_left > 0) {
        cpu_end_ = cpu_start_ + cpu_left;
        budget_check_ = now + cpu_left;  // the thread cannot use its CPU faster than the clock runs
    }
    const std::int64_t expiry = next_expiry();
    // A thread that blocks the signal (sigwait or signalfd designs) would never be kicked out. A
    // dedicated thread unblocks it for good the first time, and looks no more.
    if (!(thread_timer::dedicated() && thread_timer::kept_unblocked() == state_.signal)) {
        sigset_t mask;
        ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
        if (sigismember(&mask, state_.signal) == 1) {
            sigset_t ours;
            sigemptyset(&ours);
            sigaddset(&ours, state_.signal);
            ::pthread_sigmask(SIG_UNBLOCK, &ours, nullptr);
            unblocked_ = !thread_timer::dedicated();
        }
        if (thread_timer::dedicated()) thread_timer::keep_unblocked(state_.signal);
    }
    active_call& frame = current.frames[depth_];
    frame = active_call{};
    frame.immediate_exit = state_.immediate_exit;
    frame.cancel = &state_.cancel;
    frame.expiry = expiry;
    frame.deadline = deadline_;
    frame.cpu_end = cpu_end_;
    frame.signal = state_.signal;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    current.depth = depth_ + 1;
    // Only now: a timer that fires before its frame is visible would be lost.
    if (expiry != 0) {
        try {
            thread_timer::arm(state_.signal, expiry);
        } catch (...) {
            pop();
            throw;
        }
        armed_ = true;
    }
}

run_frame::~run_frame() { pop(); }

std::int64_t run_frame::cpu_used() const noexcept { return measure_cpu_ ? thread_cpu_ns() - cpu_start_ : 0; }

std::int64_t run_frame::next_expiry() const noexcept { return earlier(earlier(deadline_, slice_end_), budget_check_); }

bool run_frame::budget_used_up(std::int64_t now) noexcept {
    if (budget_check_ == 0 || now < budget_check_) return false;
    const std::int64_t left = cpu_end_ - thread_cpu_ns();
    if (left <= 0) return true;
    budget_check_ = now + std::max(left, min_budget_check_ns);
    return false;
}

void run_frame::pop() noexcept {
    current.depth = depth_;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    current.frames[depth_] = active_call{};
    // The frame outside gets the timer back: its deadline may have passed meanwhile (then it fires
    // at once and that call stops when its guest runs again).
    int outer = depth_ - 1;
    while (outer >= 0 && current.frames[outer].expiry == 0) --outer;
    try {
        if (outer >= 0) {
            thread_timer::arm(current.frames[outer].signal, current.frames[outer].expiry);
        } else if (armed_) {
            thread_timer::disarm();  // gone off or not: it would go off (again) for no one
        }
    } catch (const std::exception&) {
        // The timer existed a moment ago, so re-arming cannot run out of timers. Should it fail all
        // the same, the outer call loses its deadline but not its kill.
    }
    if (unblocked_) {
        sigset_t ours;
        sigemptyset(&ours);
        sigaddset(&ours, state_.signal);
        ::pthread_sigmask(SIG_BLOCK, &ours, nullptr);
        // An ordinary outer call blocks it again under a nested call that dedicated the thread.
        if (thread_timer::kept_unblocked() == state_.signal) thread_timer::keep_unblocked(0);
    }
}

void run_frame::entering_guest() noexcept {
    if (slice_ != 0) {
        entered_at_ = monotonic_ns();
    } else {
        ran_ = true;
    }
    current.frames[depth_].in_guest = 1;
    state_.in_guest.store(true);
}

void run_frame::left_guest(bool by_signal) noexcept {
    state_.in_guest.store(false);
    active_call& frame = current.frames[depth_];
    frame.in_guest = 0;
    if (slice_ != 0 && !ran_) {
        if (!by_signal) {
            ran_ = true;  // the guest executed up to an exit of its own
        } else {
            // The guest's share of this KVM_RUN: from entering it to the slice's end, less what
            // leaving took after that end, which entering costs about as much again.
            const std::int64_t now = monotonic_ns();
            const std::int64_t until = std::min(now, slice_end_);
            const std::int64_t leaving = now - until;
            ran_ = until - entered_at_ - leaving >= slice_ / 4;
        }
    }
    // The timer went off for this guest, which has stopped: its repetition would only interrupt
    // what the thread does next (a host function, the worker's event loop). One system call, only
    // after a slice end or a deadline.
    if (frame.timer_hit != 0) thread_timer::stop_repeating();
}

run_frame::reason run_frame::stop_reason() noexcept {
    // Clear first, then look: a killer that sets `cancel` after this look sets immediate_exit after
    // this clear, so the next KVM_RUN still stops. The timer's handler runs on this thread: it sets
    // timer_hit before immediate_exit, so a hit it marks after this look stops the next KVM_RUN too.
    set_immediate_exit(state_.immediate_exit, 0);  // seq_cst store, then seq_cst loads
    if (state_.cancel.load()) return reason::cancelled;
    active_call& frame = current.frames[depth_];
    if (frame.timer_hit == 0) {
        // The arming this frame relied on went off for another (see on_signal()).
        if (frame.expiry != 0 && !thread_timer::covers(frame.expiry)) {
            try {
                thread_timer::arm(state_.signal, frame.expiry);
                armed_ = true;
            } catch (const std::exception&) {
                // As in pop(): the timer exists, so this does not fail in practice; a kill still works.
            }
        }
        return reason::none;
    }
    frame.timer_hit = 0;  // armed_ stays: the arming repeats until disarmed or replaced
    const std::int64_t now = monotonic_ns();
    if (deadline_ != 0 && now >= deadline_) return reason::timed_out;
    if (budget_used_up(now)) return reason::over_budget;
    if (slice_end_ != 0 && now >= slice_end_) {
        if (ran_ || restarts_ == max_slice_restarts) return reason::slice_over;
        // The slice was over before the guest got much of it (this thread was slow to get here,
        // or entering the guest took most of it): it starts again, longer, or a slice shorter
        // than a VM entry would end slice after slice with no progress.
        ++restarts_;
        slice_ *= 2;
        slice_end_ = now + slice_;
    }
    // Not due yet: a nested frame's timer re-armed for this one after it had fired, the slice that
    // starts again, or a budget with time left.
    frame.expiry = next_expiry();
    try {
        thread_timer::arm(state_.signal, frame.expiry);
        armed_ = true;
    } catch (const std::exception&) {
        // As in pop(): the timer exists, so this does not fail in practice; a kill still works.
    }
    return reason::none;
}

}  // namespace hl::detail

namespace hl {

bool interrupt_handle::kill() const { return state_ && state_->kill(); }

bool current_call_interrupted() noexcept {
    const int depth = detail::current.depth;
    if (depth == 0) return false;
    const auto& frame = detail::current.frames[depth - 1];
    return (frame.cancel != nullptr && frame.cancel->load()) ||
           (frame.deadline != 0 && detail::monotonic_ns() >= frame.deadline) ||
           (frame.cpu_end != 0 && detail::thread_cpu_ns() >= frame.cpu_end);
}

bool interrupt_handle::running() const noexcept { return state_ && state_->running.load(); }

void interrupt_handle::kill_current_or_next() const {
    if (state_) state_->kill_current_or_next();
}

void interrupt_handle::disarm() const {
    if (state_) state_->disarm();
}

std::uint64_t stale_interrupt_signals() noexcept { return detail::stale_signals.load(); }

}  // namespace hl
