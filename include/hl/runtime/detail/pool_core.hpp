// SPDX-License-Identifier: Apache-2.0
// The non-template heart of sandbox_pool: idle sandboxes per worker, FIFO waiters, recycling and
// statistics.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "hl/runtime/detail/cover.hpp"
#include "hl/runtime/detail/sandbox_state.hpp"
#include "hl/runtime/detail/task_cancellation.hpp"
#include "hl/runtime/pool_options.hpp"
#include "hl/runtime/pool_stats.hpp"
#include "hl/runtime/runtime.hpp"

namespace hl::detail {

/// Words for the codes an operation completes with without running (an acquire that failed, a
/// cancelled or stale operation).
std::string abort_message(std::error_code ec);
inline std::string pool_error_message(std::error_code ec) { return ec ? abort_message(ec) : std::string(); }

/// A waiting acquire. deliver() is called exactly once, under no lock; it must not run user code
/// inline (completions are deferred).
struct pool_waiter {
    virtual ~pool_waiter() = default;
    /// Whether deliver() comes from the acquire itself (an idle sandbox, or a refusal), on the
    /// acquiring thread; false once the waiter has waited.
    bool immediate = true;
    virtual void deliver(std::error_code ec, std::shared_ptr<sandbox_state> sandbox) = 0;
};

class pool_core : public std::enable_shared_from_this<pool_core> {
public:
    pool_core(asio::any_io_executor ex, std::shared_ptr<const snapshot> clean,
              std::function<void(multi_use_sandbox&)> bind, pool_options options);
    ~pool_core();

    /// Creates min_size sandboxes in the background, spread over the workers. `held`: as for
    /// release().
    void start(const cover& held = {});

    /// Hands `w` a sandbox now or when one is free (FIFO): an idle one of the calling thread's
    /// worker first, then any other. While `w` waits, cancelling `task` (if given) withdraws it
    /// (asio::error::operation_aborted).
    void acquire(std::unique_ptr<pool_waiter> w, const std::shared_ptr<task_cancellation>& task = nullptr);

    /// A lease ends: the sandbox gets a new holder epoch (nothing of the old holder reaches it), a
    /// restore to the clean snapshot is queued on its worker behind what is under way there, and
    /// it is handed out again at once (the next holder's operations queue behind the restore).
    /// `held`: work on the pool's executor that the caller holds, if any (see cover_of()).
    void release(std::shared_ptr<sandbox_state> sandbox, const cover& held = {});

    /// A pool task is over: its latency (from its start to its completion) and what its call cost.
    void record_task(std::chrono::nanoseconds elapsed, const call_usage& used) noexcept;
    /// pool_options::call_limits: the defaults of the pool's calls and its leases'.
    const call_limits& default_limits() const noexcept { return options_.call_limits; }
    pool_stats stats() const;

    /// No more acquires (errc::pool_closed); waiters get asio::error::operation_aborted; idle
    /// sandboxes are dropped, the others when their lease ends.
    void close();
    /// Calls `done` (posted to the pool's executor) once nothing is in use, recycling or coming.
    void when_drained(std::function<void()> done);

    const asio::any_io_executor& executor() const noexcept { return ex_; }

private:
    struct waiting {
        std::uint64_t id;
        std::unique_ptr<pool_waiter> waiter;
        std::unique_ptr<asio::steady_timer> timer;
    };

    void cancel(std::uint64_t id, std::error_code reason);
    // What runs or destroys the application's code on a worker (a creation runs bind; dropping a
    // sandbox destroys its host functions; a restore's completion may create a replacement, and
    // the last reference to the core destroys bind) holds work on the pool's executor, so that
    // its run() returns only after. Such work is `held` by the caller already, passed on from the
    // operation that led here (a pool task's call, a creation, a restore), or else taken where
    // cover::of() allows it.
    cover cover_of(const cover& held) const noexcept;
    void create_one(const cover& held);  // with mutex_ held
    void created(std::shared_ptr<sandbox_state> sandbox, std::error_code ec, const cover& held);
    void restored(const std::shared_ptr<sandbox_state>& sandbox, std::error_code ec, const cover& held);
    /// A sandbox free for the next holder (new or recycled), with mutex_ held: to the first
    /// waiter (returned, to deliver outside the lock) or idle.
    std::unique_ptr<pool_waiter> hand_over_locked(std::shared_ptr<sandbox_state>& sandbox);
    std::shared_ptr<sandbox_state> take_idle_locked();
    void check_drained();  // with mutex_ held
    void drop(std::shared_ptr<sandbox_state> sandbox, const cover& held = {});

    asio::any_io_executor ex_;
    std::shared_ptr<const snapshot> clean_;
    std::function<void(multi_use_sandbox&)> bind_;
    pool_options options_;
    std::vector<std::shared_ptr<worker>> workers_;

    mutable std::mutex mutex_;
    std::vector<std::vector<std::shared_ptr<sandbox_state>>> idle_;  // per worker index
    std::vector<std::size_t> placed_;                                // sandboxes per worker index
    std::size_t idle_count_ = 0;
    std::list<waiting> waiters_;
    std::uint64_t next_id_ = 1;
    std::size_t in_use_ = 0, recycling_ = 0, creating_ = 0;
    bool closed_ = false;
    std::vector<std::weak_ptr<sandbox_state>> broken_;  // a restore failed: replace, not reuse
    pool_stats counters_;
    std::vector<std::function<void()>> drained_;
};

}  // namespace hl::detail
