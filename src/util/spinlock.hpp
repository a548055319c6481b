// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <thread>

namespace hl::util {

/// A lock for critical sections of a few microseconds. Waking a thread blocked in a futex costs
/// 30-40 us on virtualized hosts (measured under PVM), more than these sections last, so waiters spin (and
/// yield if the holder was descheduled) instead of sleeping. Meets Lockable for std::lock_guard.
class spinlock {
public:
    void lock() noexcept {
        for (int spins = 0; locked_.exchange(true, std::memory_order_acquire); ++spins) {
            while (locked_.load(std::memory_order_relaxed)) {
                if (++spins < 1000) {
                    __builtin_ia32_pause();
                } else {
                    std::this_thread::yield();
                }
            }
        }
    }
    bool try_lock() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> locked_{false};
};

}  // namespace hl::util
