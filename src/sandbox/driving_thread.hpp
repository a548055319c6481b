// SPDX-License-Identifier: Apache-2.0
// Which thread drives a sandbox. A sandbox is used by one thread at a time: calls, snapshots and
// restores claim it for their duration, so that a second thread fails with errc::usage_error instead
// of racing on guest memory, and a destructor on another thread can wait for a running call to leave.
#pragma once

#include <atomic>
#include <thread>

namespace hl::detail {

class driving_thread {
public:
    enum class claim { taken, held_by_this_thread, held_by_another_thread };

    /// Claims the sandbox for the calling thread if no thread holds it. One atomic operation.
    claim try_take() noexcept {
        const std::thread::id self = std::this_thread::get_id();
        std::thread::id holder{};
        // acquire/release: the next driver sees everything the last one wrote to the sandbox.
        if (holder_.compare_exchange_strong(holder, self, std::memory_order_acquire)) return claim::taken;
        return holder == self ? claim::held_by_this_thread : claim::held_by_another_thread;
    }

    /// True while the calling thread holds the claim: for a sandbox, only from inside its own
    /// callbacks (or the operation itself).
    bool held_by_this_thread() const noexcept {
        return holder_.load(std::memory_order_relaxed) == std::this_thread::get_id();
    }

    /// Gives up a claim that try_take() returned as `taken`. The last access to the sandbox: a
    /// destructor waiting on another thread may free it as soon as this store lands.
    void release() noexcept { holder_.store(std::thread::id{}, std::memory_order_release); }

private:
    std::atomic<std::thread::id> holder_{};
};

}  // namespace hl::detail
