// SPDX-License-Identifier: Apache-2.0
// A bounded wait for tests whose failure mode is a guest that never stops.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "hl/interrupt.hpp"

namespace hl::test {

// Kills one sandbox's call if the test has not finished in `limit`: a guest left without a timer
// fails the test instead of hanging it. With a `kick_signal` for a thread that blocks the interrupt
// signal (where a kill's signal stays pending), the kill runs on a thread of its own while the
// watchdog sends `thread` that other interrupt signal of the library's, whose handler does nothing:
// it ends KVM_RUN, and the call sees the kill.
class call_watchdog {
public:
    call_watchdog(hl::interrupt_handle handle, std::chrono::seconds limit, pthread_t thread = {}, int kick_signal = 0)
        : thread_([this, handle, limit, thread, kick_signal] {
              std::unique_lock lock(mutex_);
              if (done_cv_.wait_for(lock, limit, [this] { return done_; })) return;
              fired_ = true;
              while (!done_) {
                  lock.unlock();
                  if (kick_signal == 0) {
                      handle.kill();
                      std::this_thread::sleep_for(std::chrono::milliseconds(10));
                  } else {
                      std::thread killer([&] { handle.kill(); });
                      for (int i = 0; i < 20; ++i) {
                          std::this_thread::sleep_for(std::chrono::milliseconds(10));
                          ::pthread_kill(thread, kick_signal);
                      }
                      killer.join();
                  }
                  lock.lock();
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
