// SPDX-License-Identifier: Apache-2.0
// One worker thread of an hl::runtime: an io_context run by one thread, on which sandboxes live.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <atomic>
#include <memory>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <thread>

#include "hl/call_limits.hpp"

namespace hl::detail {

/// Work that waits for its worker to have nothing else to run: a call past a slice
/// (runtime_options::sliced_share). The worker wakes the oldest when a poll finds nothing ready,
/// before it spins or sleeps.
class idle_waiter {
public:
    virtual void wake() = 0;

protected:
    ~idle_waiter() = default;
};

class worker : public std::enable_shared_from_this<worker> {
public:
    /// `sliced_share` in (0, 1]: see runtime_options.
    worker(std::size_t index, std::chrono::nanoseconds slice, double sliced_share, const call_limits& limits = {});
    std::size_t index() const noexcept { return index_; }
    /// shutdown(), then frees the io_context (handlers still queued are destroyed, not run).
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    asio::io_context& context() noexcept { return io_; }
    asio::io_context::executor_type executor() noexcept { return io_.get_executor(); }
    std::chrono::nanoseconds slice() const noexcept { return slice_; }
    /// runtime_options::call_limits: the defaults of calls run here.
    const call_limits& limits() const noexcept { return limits_; }
    /// How long a call past a slice may wait for the worker's other work: slice × (1 / share − 1).
    std::chrono::nanoseconds sliced_wait() const noexcept { return sliced_wait_; }

    /// From the worker's thread: `w` is woken (wake()) the next time the worker has nothing else to
    /// run, unless it stops waiting first. Waiters that are gone are skipped.
    void wait_for_idle(std::weak_ptr<idle_waiter> w) { idle_waiters_.push_back(std::move(w)); }
    void stop_waiting_for_idle(const idle_waiter* w) noexcept;

    /// The worker the calling thread is, or null.
    static worker* current() noexcept;
    bool running_in_this_thread() const noexcept { return current() == this; }
    /// The worker whose io_context `ex` submits to, or null.
    static worker* of(const asio::any_io_executor& ex) noexcept;

    /// Lets the thread end once no work is in flight (work counted by the io_context), and joins it.
    /// From the worker's own thread it only lets go: the thread ends after the handler returns.
    void shutdown();
    /// True once the thread has ended or is ending: work submitted now would never run.
    bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }

    /// Posts `f` to the worker, and lets a worker that spins idle see it without a wake-up.
    template <class F>
    void post(F&& f) {
        asio::post(io_, std::forward<F>(f));
        last_post_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        inbound_.fetch_add(1, std::memory_order_release);
    }

    /// Sandboxes living here, for placement.
    std::atomic<std::size_t> sandboxes{0};

private:
    void loop(std::size_t index);
    /// Idle since `idle_since`: waits up to the spin budget for a post() after the `seen`-th; true
    /// if one came.
    bool spin(std::uint64_t seen, std::chrono::steady_clock::time_point idle_since);
    void adapt_spin(std::chrono::nanoseconds gap);
    /// Wakes the oldest idle waiter still there; false when there is none.
    bool wake_idle_waiter();

    std::size_t index_;
    call_limits limits_;
    std::chrono::nanoseconds slice_;
    std::chrono::nanoseconds sliced_wait_;
    std::deque<std::weak_ptr<idle_waiter>> idle_waiters_;  // the worker thread's own
    asio::io_context io_{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
    std::atomic<bool> stopped_{false};
    std::atomic<std::uint64_t> inbound_{0};  // post()s so far
    std::atomic<std::chrono::steady_clock::rep> last_post_{0};  // when the latest post() came
    // The worker thread's own: how long an idle worker spins before it sleeps (adapt_spin()).
    std::chrono::nanoseconds spin_budget_{std::chrono::microseconds(50)};
    std::thread thread_;
};

}  // namespace hl::detail
