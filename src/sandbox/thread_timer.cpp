// SPDX-License-Identifier: Apache-2.0
#include "sandbox/thread_timer.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>

namespace hl::detail::thread_timer {
namespace {

// When the pending arming goes off (monotonic ns), 0 for none. The signal handler clears it, so it
// is initial-exec TLS (no allocation on first use in the handler) and written only before the
// timer_settime it describes: an arming that fires at once is then cleared, never left standing
// for a timer that no longer runs. A value left standing by a signal the handler never saw (a
// host function took it) would make covers() skip an arming on a dedicated thread; the arming's
// repetition (below) is what then reaches the handler.
[[gnu::tls_model("initial-exec")]] thread_local std::atomic<std::int64_t> pending_at{0};

// After it goes off, an arming goes off again every millisecond until the signal handler finds no
// guest left to stop (stop_repeating()). A kick is then never lost for good: ThreadSanitizer, for
// one, holds back a signal that comes just before an ioctl until the ioctl has returned, and
// KVM_RUN with a spinning guest never returns unless a later signal ends it.
constexpr long repeat_ns = 1'000'000;

// The timer, for the signal handler: initial-exec TLS, as above, and lock-free atomics that are
// written in order (the id before it is said to exist).
[[gnu::tls_model("initial-exec")]] thread_local std::atomic<timer_t> handler_timer{};
[[gnu::tls_model("initial-exec")]] thread_local std::atomic<bool> handler_timer_exists{false};
static_assert(std::atomic<timer_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

struct timer {
    timer_t id{};
    int signal = 0;
    bool created = false;

    ~timer() {
        handler_timer_exists.store(false, std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (created) ::timer_delete(id);
    }

    // A timer sends one signal number; a thread that drives sandboxes with different interrupt
    // signals re-creates it when the signal changes.
    void make(int sig) {
        if (created && signal == sig) return;
        // Its arming goes with it: should the new timer be refused, no call may count on it.
        pending_at.store(0, std::memory_order_relaxed);
        handler_timer_exists.store(false, std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        if (created) ::timer_delete(id);
        created = false;
        sigevent event{};
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = sig;
        event._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));  // sigev_notify_thread_id
        if (::timer_create(CLOCK_MONOTONIC, &event, &id) != 0) {
            throw std::system_error(errno, std::system_category(), "timer_create for call deadlines and slices");
        }
        created = true;
        signal = sig;
        handler_timer.store(id, std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);
        handler_timer_exists.store(true, std::memory_order_relaxed);
    }
};

thread_local timer this_thread_timer;

[[gnu::tls_model("initial-exec")]] thread_local bool is_dedicated = false;
thread_local int unblocked_for_good = 0;

}  // namespace

void arm(int signal, std::int64_t expiry) {
    timer& t = this_thread_timer;
    const std::int64_t at = expiry > 0 ? expiry : 1;  // 0 would disarm
    if (is_dedicated && t.created && t.signal == signal && covers(at)) return;
    t.make(signal);
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(at / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(at % 1'000'000'000);
    spec.it_interval.tv_nsec = repeat_ns;
    pending_at.store(at, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (::timer_settime(t.id, TIMER_ABSTIME, &spec, nullptr) != 0) {
        pending_at.store(0, std::memory_order_relaxed);
        throw std::system_error(errno, std::system_category(), "timer_settime for a call deadline or slice");
    }
}

void disarm() noexcept {
    if (is_dedicated) return;
    timer& t = this_thread_timer;
    const itimerspec off{};
    if (t.created) ::timer_settime(t.id, 0, &off, nullptr);
    pending_at.store(0, std::memory_order_relaxed);
}

bool covers(std::int64_t expiry) noexcept {
    const std::int64_t at = pending_at.load(std::memory_order_relaxed);
    return at != 0 && at <= expiry;
}

void expired(std::int64_t now) noexcept {
    const std::int64_t at = pending_at.load(std::memory_order_relaxed);
    if (at != 0 && now >= at) pending_at.store(0, std::memory_order_relaxed);
}

void stop_repeating() noexcept {
    // An arming still pending was made after the one that went off, and replaced its repetition.
    if (!handler_timer_exists.load(std::memory_order_relaxed)) return;
    if (pending_at.load(std::memory_order_relaxed) != 0) return;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    const itimerspec off{};
    ::timer_settime(handler_timer.load(std::memory_order_relaxed), 0, &off, nullptr);  // async-signal-safe
}

void set_dedicated(bool on) noexcept {
    const bool was = is_dedicated;
    is_dedicated = on;
    if (was != on) unblocked_for_good = 0;
    if (was && !on) disarm();  // nothing of the dedicated time goes off later
}

bool dedicated() noexcept { return is_dedicated; }

int kept_unblocked() noexcept { return unblocked_for_good; }

void keep_unblocked(int signal) noexcept { unblocked_for_good = signal; }

}  // namespace hl::detail::thread_timer
