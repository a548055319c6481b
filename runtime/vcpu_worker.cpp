// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/vcpu_worker.hpp"

#include <algorithm>
#include <pthread.h>

#include <chrono>
#include <optional>

#include "hl/error.hpp"

namespace hl::detail {

namespace {

std::atomic<int> spinners{0};  // workers spinning right now, across all sandboxes
// Half the cores, at least one: a spinning worker holds a core the event loop may need.
const int max_spinners = std::max(1, static_cast<int>(std::thread::hardware_concurrency() / 2));

}  // namespace

vcpu_worker::vcpu_worker()
    : thread_([this] {
          pthread_setname_np(pthread_self(), "hl-vcpu");  // for top -H, perf and debuggers
          loop();
      }) {}

vcpu_worker::~vcpu_worker() { stop(); }

bool vcpu_worker::push(std::unique_ptr<worker_job> job, const std::function<void(ticket)>& on_queued, bool wake) {
    {
        std::lock_guard lock(mutex_);
        if (!stopping_) {
            if (wake) note_wake();
            queue_.push_back(std::move(job));
            if (on_queued) on_queued(std::prev(queue_.end()));
            job = nullptr;
            has_work_.store(true, std::memory_order_release);  // a spinning worker takes it at once
        }
    }
    if (job) {
        job->abort();
        return false;
    }
    if (wake) wake_.notify_one();
    return true;
}

std::unique_ptr<worker_job> vcpu_worker::withdraw(const std::function<bool(ticket&)>& find) {
    std::lock_guard lock(mutex_);
    ticket t;
    if (!find(t)) return nullptr;
    auto job = std::move(*t);
    queue_.erase(t);
    return job;
}

void vcpu_worker::wake() {
    {
        std::lock_guard lock(mutex_);
        if (queue_.empty()) return;
        note_wake();
        has_work_.store(true, std::memory_order_release);
    }
    wake_.notify_one();
}

void vcpu_worker::note_wake() {
    if (!woken_) woken_at_ = std::chrono::steady_clock::now();
    woken_ = true;
}

void vcpu_worker::close() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        has_work_.store(true, std::memory_order_release);  // end a spin
    }
    wake_.notify_one();
}

void vcpu_worker::stop() {
    if (thread_.get_id() == std::this_thread::get_id()) {
        throw error(errc::usage_error,
                    "a vCPU worker cannot be stopped from one of its own jobs: it would have to wait for itself");
    }
    close();
    if (thread_.joinable()) thread_.join();
}

void vcpu_worker::loop() {
    for (;;) {
        std::unique_ptr<worker_job> job;
        bool abort = false;
        // A caller that awaits one call and starts the next finds the worker still spinning: no
        // futex wake-up (30-40 us on virtualized hosts) between back-to-back calls. The spin lasts
        // as long as recent work took to come (adapt_spin), and only a few workers spin at once, so
        // that spinning never takes every core from the threads that produce the work (there are
        // often more workers than cores).
        const auto idle_since = std::chrono::steady_clock::now();
        bool caught = false;
        if (spin_budget_.count() > 0 && spinners.fetch_add(1, std::memory_order_relaxed) < max_spinners) {
            const auto spin_until = idle_since + spin_budget_;
            for (unsigned i = 1; !(caught = has_work_.load(std::memory_order_acquire)); ++i) {
                __builtin_ia32_pause();
                if (i % 16 == 0 && std::chrono::steady_clock::now() >= spin_until) break;  // the clock costs more than a pause
            }
            spinners.fetch_sub(1, std::memory_order_relaxed);
        } else if (spin_budget_.count() > 0) {
            spinners.fetch_sub(1, std::memory_order_relaxed);
        }
        std::optional<std::chrono::steady_clock::time_point> woken_at;  // when asked to work, if it was
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) break;  // stopping, nothing left
            job = std::move(queue_.front());
            queue_.pop_front();
            job->dequeued();
            has_work_.store(!queue_.empty(), std::memory_order_relaxed);
            abort = stopping_;
            if (woken_) woken_at = woken_at_;
            woken_ = false;
        }
        if (!caught && woken_at) adapt_spin(*woken_at - idle_since);
        if (abort) {
            job->abort();
        } else {
            job->run();
        }
    }
    std::function<void()> on_exit;
    {
        std::lock_guard lock(mutex_);
        on_exit = std::move(on_exit_);
    }
    if (on_exit) on_exit();
}

void vcpu_worker::adapt_spin(std::chrono::nanoseconds gap) {
    // Work that came within the longest spin would have been caught by one: spin longer next time.
    // Work that came later made any spin a waste of a core: spin half as long, down to not at all.
    using std::chrono::microseconds;
    if (gap <= max_spin) {
        spin_budget_ = std::min(max_spin, std::max<std::chrono::nanoseconds>(spin_budget_ * 2, microseconds(4)));
    } else {
        spin_budget_ /= 2;
        if (spin_budget_ < microseconds(1)) spin_budget_ = {};
    }
}

}  // namespace hl::detail
