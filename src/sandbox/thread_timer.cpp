// SPDX-License-Identifier: Apache-2.0
#include "sandbox/thread_timer.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace hl::detail::thread_timer {
namespace {

struct timer {
    timer_t id{};
    int signal = 0;
    bool created = false;

    ~timer() {
        if (created) ::timer_delete(id);
    }

    // A timer sends one signal number; a thread that drives sandboxes with different interrupt
    // signals re-creates it when the signal changes.
    void make(int sig) {
        if (created && signal == sig) return;
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
    }
};

thread_local timer this_thread_timer;

}  // namespace

void arm(int signal, std::int64_t expiry) {
    timer& t = this_thread_timer;
    t.make(signal);
    itimerspec spec{};
    const std::int64_t at = expiry > 0 ? expiry : 1;  // 0 would disarm
    spec.it_value.tv_sec = static_cast<time_t>(at / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(at % 1'000'000'000);
    if (::timer_settime(t.id, TIMER_ABSTIME, &spec, nullptr) != 0) {
        throw std::system_error(errno, std::system_category(), "timer_settime for a call deadline or slice");
    }
}

void disarm() noexcept {
    timer& t = this_thread_timer;
    const itimerspec off{};
    if (t.created) ::timer_settime(t.id, 0, &off, nullptr);
}

}  // namespace hl::detail::thread_timer
