// SPDX-License-Identifier: Apache-2.0
#include "sandbox/interrupt.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>

#include "hl/error.hpp"
#include "hl/interrupt.hpp"
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
    std::atomic<bool>* deadline_hit = nullptr;
    std::uintptr_t deadline_token = 0;
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
    const int depth = current.depth;
    if (info->si_code == SI_TIMER) {
        const auto token = reinterpret_cast<std::uintptr_t>(info->si_value.sival_ptr);
        for (int i = 0; i < depth; ++i) {
            active_call& frame = current.frames[i];
            if (frame.deadline_hit != nullptr && frame.deadline_token == token) {
                frame.deadline_hit->store(true);
                set_immediate_exit(frame.immediate_exit, 1);  // stops that call when its guest runs again
                return;
            }
        }
        stale_signals.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    // A kill: the killer already set immediate_exit; the signal only has to end KVM_RUN.
    if (depth == 0 || !current.frames[depth - 1].in_guest) stale_signals.fetch_add(1, std::memory_order_relaxed);
}

// Per-thread identity for deadline timers: thread ids are reused, this is not.
std::atomic<std::uint64_t> next_thread_serial{1};
[[gnu::tls_model("initial-exec")]] thread_local std::uint64_t thread_serial = 0;
std::uint64_t this_thread_serial() noexcept {
    if (thread_serial == 0) thread_serial = next_thread_serial.fetch_add(1);
    return thread_serial;
}

std::mutex install_mutex;
std::uint64_t installed_mask = 0;  // bit n: SIGRTMIN + n

std::atomic<std::uintptr_t> next_token{1};

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
    action.sa_flags = SA_SIGINFO;  // no SA_RESTART: KVM_RUN must return EINTR
    sigemptyset(&action.sa_mask);
    if (::sigaction(signal, &action, nullptr) != 0) throw std::system_error(errno, std::system_category(), "sigaction");
    installed_mask |= std::uint64_t{1} << offset;
    return signal;
}

bool interrupt_state::kill() {
    using clock = std::chrono::steady_clock;
    // Re-sent while the guest keeps running: a signal can land between the vCPU thread's checks.
    // Between kicks, yield rather than sleep: on a busy machine the vCPU thread may share this core.
    for (int kicks = 0; kicks < 100; ++kicks) {
        {
            std::lock_guard lock(mutex);
            if (immediate_exit == nullptr || !running.load()) return kicks > 0;
            cancel.store(true);
            set_immediate_exit(immediate_exit, 1);  // seq_cst, like the load below: no fence needed
            if (!in_guest.load()) return true;  // it will see immediate_exit before entering again
            ::pthread_kill(thread, signal);
        }
        const auto give_up = clock::now() + std::chrono::microseconds(kicks < 10 ? 200 : 2000);
        while (clock::now() < give_up) {
            if (!running.load() || !in_guest.load()) return true;
            std::this_thread::yield();
        }
    }
    return true;
}

deadline_timer::~deadline_timer() {
    if (created_) ::timer_delete(id_);
}

std::uintptr_t deadline_timer::prepare(int signal) {
    const std::uint64_t self = this_thread_serial();
    if (!created_ || thread_ != self) {
        if (created_) ::timer_delete(id_);
        created_ = false;
        token_ = next_token.fetch_add(1);
        sigevent event{};
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_value.sival_ptr = reinterpret_cast<void*>(token_);
        event._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));  // sigev_notify_thread_id
        if (::timer_create(CLOCK_MONOTONIC, &event, &id_) != 0) {
            throw std::system_error(errno, std::system_category(), "timer_create for a call deadline");
        }
        created_ = true;
        thread_ = self;
    }
    return token_;
}

void deadline_timer::start(std::chrono::nanoseconds timeout) {
    const auto ns = timeout.count() > 0 ? timeout.count() : 1;  // 0 would disarm
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (::timer_settime(id_, 0, &spec, nullptr) != 0) {
        throw std::system_error(errno, std::system_category(), "timer_settime for a call deadline");
    }
}

void deadline_timer::disarm() noexcept {
    const itimerspec off{};
    if (created_) ::timer_settime(id_, 0, &off, nullptr);
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

call_guard::call_guard(interrupt_state& state, deadline_timer* timer, std::chrono::nanoseconds timeout)
    : state_(state), timer_(timer) {
    const int depth = current.depth;
    if (depth >= max_nesting) {
        throw error(errc::usage_error,
                    util::strfmt("guest calls nest more than %d deep through host functions on one thread", max_nesting));
    }
    // A thread that blocks the signal (sigwait or signalfd designs) would never be kicked out.
    sigset_t mask;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    if (sigismember(&mask, state_.signal) == 1) {
        sigset_t ours;
        sigemptyset(&ours);
        sigaddset(&ours, state_.signal);
        ::pthread_sigmask(SIG_UNBLOCK, &ours, nullptr);
        unblocked_ = true;
    }
    {
        std::lock_guard lock(state_.mutex);
        const bool cancelled = std::exchange(state_.pending_cancel, false);
        state_.cancel.store(cancelled);
        set_immediate_exit(state_.immediate_exit, cancelled ? 1 : 0);
        state_.thread = ::pthread_self();
        state_.running.store(true);
    }
    active_call& frame = current.frames[depth];
    frame = active_call{};
    frame.immediate_exit = state_.immediate_exit;
    frame.cancel = &state_.cancel;
    try {
        if (timer_ != nullptr) {
            frame.deadline_token = timer_->prepare(state_.signal);
            frame.deadline_hit = &hit_;
        }
        std::atomic_signal_fence(std::memory_order_seq_cst);
        current.depth = depth + 1;
        if (timer_ != nullptr) timer_->start(timeout);
    } catch (...) {
        end();
        throw;
    }
}

call_guard::~call_guard() { end(); }

void call_guard::end() noexcept {
    if (timer_ != nullptr) timer_->disarm();
    if (current.depth > 0 && current.frames[current.depth - 1].immediate_exit == state_.immediate_exit) {
        current.depth = current.depth - 1;
        std::atomic_signal_fence(std::memory_order_seq_cst);
        current.frames[current.depth] = active_call{};
    }
    {
        std::lock_guard lock(state_.mutex);
        state_.running.store(false);
    }
    if (unblocked_) {
        sigset_t ours;
        sigemptyset(&ours);
        sigaddset(&ours, state_.signal);
        ::pthread_sigmask(SIG_BLOCK, &ours, nullptr);
    }
}

void call_guard::entering_guest() noexcept {
    current.frames[current.depth - 1].in_guest = 1;
    state_.in_guest.store(true);
}

void call_guard::left_guest() noexcept {
    state_.in_guest.store(false);
    current.frames[current.depth - 1].in_guest = 0;
}

call_guard::reason call_guard::stop_reason() noexcept {
    // Clear first, then look: a killer that sets `cancel` after this look sets immediate_exit after
    // this clear, so the next KVM_RUN still stops.
    set_immediate_exit(state_.immediate_exit, 0);  // seq_cst store, then seq_cst loads
    if (state_.cancel.load()) return reason::cancelled;
    if (hit_.load()) return reason::timed_out;
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
           (frame.deadline_hit != nullptr && frame.deadline_hit->load());
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
