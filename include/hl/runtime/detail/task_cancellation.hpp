// SPDX-License-Identifier: Apache-2.0
// One task's cancellation as it passes from stage to stage (a pool task: waiting for a sandbox,
// being handed one, calling the guest), so that a cancellation arriving at any moment reaches
// whichever stage is under way, or the next one to start.
#pragma once

#include <functional>
#include <mutex>

namespace hl::detail {

/// Thread-safe. Each stage arm()s its stop function before it starts and acts on a false return
/// (the task is cancelled already: do not start). cancel() runs the stop function armed last, outside
/// the lock, so a stop function may run after its stage ended and must be harmless then (withdraw
/// a waiter that is no longer queued, cancel a call that is over).
class task_cancellation {
public:
    /// Marks the task cancelled and stops its current stage. Later calls do nothing.
    void cancel() {
        std::function<void()> stop;
        {
            std::lock_guard lock(mutex_);
            if (cancelled_) return;
            cancelled_ = true;
            stop = std::move(stop_);
        }
        if (stop) stop();
    }

    /// Makes `stop` the current stage's stop function. Returns false, dropping `stop`, if the task
    /// is cancelled already.
    bool arm(std::function<void()> stop) {
        std::lock_guard lock(mutex_);
        if (cancelled_) return false;
        stop_ = std::move(stop);
        return true;
    }

    /// The task is over: what the last stop function holds is let go.
    void disarm() {
        std::function<void()> gone;
        std::lock_guard lock(mutex_);
        gone.swap(stop_);
    }

    bool cancelled() const {
        std::lock_guard lock(mutex_);
        return cancelled_;
    }

private:
    mutable std::mutex mutex_;
    bool cancelled_ = false;
    std::function<void()> stop_;
};

}  // namespace hl::detail
