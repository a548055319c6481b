// SPDX-License-Identifier: Apache-2.0
// The thread a sandbox's vCPU lives on, and its queue of jobs. No Asio here: the queue holds
// type-erased jobs that carry their own completion.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

namespace hl::detail {

/// One unit of work for the vCPU thread. Exactly one of run() and abort() is called, once.
struct worker_job {
    virtual ~worker_job() = default;
    virtual void dequeued() noexcept {}  // under the queue lock, as the worker takes it
    virtual void run() = 0;    // on the vCPU thread
    virtual void abort() = 0;  // on any thread: complete without running (shutdown, cancelled early)
};

/// A dedicated thread running jobs in FIFO order. Jobs can be withdrawn while still queued.
class vcpu_worker {
public:
    using ticket = std::list<std::unique_ptr<worker_job>>::iterator;

    vcpu_worker();
    /// Aborts what is still queued, runs `on_exit` on the thread, joins it. Never on the worker's own
    /// thread (async_core::create() sees to that): see stop().
    ~vcpu_worker();
    vcpu_worker(const vcpu_worker&) = delete;
    vcpu_worker& operator=(const vcpu_worker&) = delete;

    /// Queues a job; `on_queued(ticket)` runs under the queue lock (to record the ticket). Without
    /// `wake`, a sleeping worker is left asleep (a spinning one still takes the job at once): the
    /// job runs when something wakes it (the next job, or wake()). Returns false, aborting the job,
    /// once the worker is stopping.
    bool push(std::unique_ptr<worker_job> job, const std::function<void(ticket)>& on_queued = {}, bool wake = true);

    /// Takes a job out of the queue if it is still there: `find(t)`, called under the queue lock, sets
    /// `t` and returns true while the job is queued (false from its dequeued() on). Returns the job
    /// or null.
    std::unique_ptr<worker_job> withdraw(const std::function<bool(ticket&)>& find);

    /// Runs on the worker thread just before it exits (destroy thread-bound state there).
    void set_on_exit(std::function<void()> f) {
        std::lock_guard lock(mutex_);
        on_exit_ = std::move(f);
    }

    /// Wakes the worker to run what is queued.
    void wake();

    /// Stops taking jobs: from now on queued and new ones are aborted, never run.
    void close();
    /// close(), then returns when the thread has exited. From one of the worker's own jobs it throws
    /// hl::error (errc::usage_error) and changes nothing: the thread cannot wait for itself, and
    /// whoever destroys the worker must wait for the job still running on it.
    void stop();

    std::thread::id thread_id() const noexcept { return thread_.get_id(); }

private:
    void loop();
    void adapt_spin(std::chrono::nanoseconds gap);
    void note_wake();  // with mutex_ held

    static constexpr std::chrono::nanoseconds max_spin{std::chrono::microseconds(50)};
    std::chrono::nanoseconds spin_budget_ = max_spin;  // the worker thread's own
    // When the worker was first asked to work since it last took a job (a push without wake does
    // not ask): adapt_spin() measures the idle gap to it. Both under mutex_.
    std::chrono::steady_clock::time_point woken_at_;
    bool woken_ = false;

    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<bool> has_work_{false};  // a hint for the spin; the queue under mutex_ is the truth
    std::list<std::unique_ptr<worker_job>> queue_;
    bool stopping_ = false;
    std::function<void()> on_exit_;
    std::thread thread_;
};

}  // namespace hl::detail
