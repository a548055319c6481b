// SPDX-License-Identifier: Apache-2.0
// A bounded wait for tests whose failure mode is a guest that never stops.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "hl/interrupt.hpp"

namespace hl::test {

// Kills one sandbox's call if the test has not finished in `limit`: a guest left without a timer
// fails the test instead of hanging it.
class call_watchdog {
public:
    call_watchdog(hl::interrupt_handle handle, std::chrono::seconds limit)
        : thread_([this, handle, limit] {
              std::unique_lock lock(mutex_);
              if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
                  fired_ = true;
                  while (!done_) {
                      lock.unlock();
                      handle.kill();
                      std::this_thread::sleep_for(std::chrono::milliseconds(10));
                      lock.lock();
                  }
              }
          }) {}
    ~call_watchdog() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        done_cv_.notify_one();
        thread_.join();
    }
    bool fired() {
        std::lock_guard lock(mutex_);
        return fired_;
    }

private:
    std::mutex mutex_;
    std::condition_variable done_cv_;
    bool done_ = false;
    bool fired_ = false;
    std::thread thread_;
};

}  // namespace hl::test
