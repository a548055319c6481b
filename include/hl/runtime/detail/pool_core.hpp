// SPDX-License-Identifier: Apache-2.0
// The non-template heart of sandbox_pool: idle sandboxes, FIFO waiters, recycling and statistics.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/detail/task_cancellation.hpp"

namespace hl {

/// Sizes and limits of a sandbox_pool.
struct pool_options {
    std::size_t min_size = 1;        ///< created in the background when the pool starts
    std::size_t max_size = 4;        ///< never more sandboxes than this, idle, in use or recycling
    std::size_t max_waiters = 1024;  ///< acquires beyond this fail at once with errc::pool_busy
    std::chrono::nanoseconds acquire_timeout{0};  ///< 0: wait as long as it takes; else errc::timed_out
};

/// A snapshot of a pool's state. size counts idle, in-use and coming sandboxes; recycling counts
/// restores queued and not yet run (each runs ahead of its sandbox's next operation).
/// latency_us[i] counts pool calls that took [2^i, 2^(i+1)) us (the last bucket: everything longer).
struct pool_stats {
    std::size_t size = 0, idle = 0, in_use = 0, recycling = 0, waiters = 0;
    std::uint64_t acquired = 0, restores = 0, replacements = 0, failures = 0;
    std::array<std::uint64_t, 24> latency_us{};
};

namespace detail {

/// A waiting acquire. deliver() is called exactly once, under no lock the caller relies on; it
/// must not run user code inline (it posts).
struct pool_waiter {
    virtual ~pool_waiter() = default;
    virtual void deliver(std::error_code ec, std::optional<async_sandbox> sandbox) = 0;
};

class pool_core : public std::enable_shared_from_this<pool_core> {
public:
    pool_core(asio::any_io_executor ex, std::shared_ptr<const snapshot> clean,
              std::function<void(multi_use_sandbox&)> bind, pool_options options);

    /// Creates min_size sandboxes in the background.
    void start();

    /// Hands `w` a sandbox now or when one is free (FIFO). While `w` waits, cancelling `task` (if
    /// given) withdraws it (asio::error::operation_aborted); once `w` has a sandbox, what the
    /// cancellation means is up to the task's next stage.
    void acquire(std::unique_ptr<pool_waiter> w, const std::shared_ptr<task_cancellation>& task = nullptr);

    /// A lease ends: a restore to the clean snapshot is queued on the sandbox's vCPU thread without
    /// waking it, and the sandbox is handed out again at once. The restore runs ahead of anything
    /// the next holder does, in the same wake-up, so a task costs one thread switch instead of
    /// two; a timer wakes restores that nothing else did. If a restore fails, the sandbox refuses
    /// calls (poisoned) and is replaced as soon as it is idle or released.
    void release(async_sandbox sandbox);

    void record_latency(std::chrono::nanoseconds elapsed);
    pool_stats stats() const;

    /// No more acquires (errc::pool_closed); waiters get asio::error::operation_aborted; idle
    /// sandboxes are dropped, the others when their lease ends.
    void close();
    /// Calls `done` (posted) once no sandbox is in use, being recycled or being created.
    void when_drained(std::function<void()> done);

    const asio::any_io_executor& executor() const noexcept { return ex_; }

private:
    struct waiting {
        std::uint64_t id;
        std::unique_ptr<pool_waiter> waiter;
        std::unique_ptr<asio::steady_timer> timer;
    };

    /// A waiter that is still waiting leaves the queue and gets `reason`.
    void cancel(std::uint64_t id, std::error_code reason);
    void create_one();  // with mutex_ held: counts it, starts it
    void creation_failed(std::error_code ec);
    /// A new or recycled sandbox, until now counted in `*was_counted_in`: to a waiter or idle.
    void arrived(async_sandbox sandbox, std::size_t pool_core::*was_counted_in);
    void check_drained();                     // with mutex_ held
    void restored(const std::weak_ptr<async_core>& which, std::error_code ec);
    void wake_deferred();

    asio::any_io_executor ex_;
    std::shared_ptr<const snapshot> clean_;
    std::function<void(multi_use_sandbox&)> bind_;
    pool_options options_;

    mutable std::mutex mutex_;
    std::vector<async_sandbox> idle_;
    std::list<waiting> waiters_;
    std::uint64_t next_id_ = 1;
    std::size_t in_use_ = 0, recycling_ = 0, creating_ = 0;
    bool closed_ = false;
    std::vector<std::weak_ptr<async_core>> deferred_;  // sandboxes with a restore queued, not yet woken
    asio::steady_timer wake_timer_;                     // wakes them if nothing else does
    bool wake_armed_ = false;
    std::vector<std::weak_ptr<async_core>> broken_;  // a restore failed while in use: replace on release
    pool_stats counters_;
    std::vector<std::function<void()>> drained_;
};

}  // namespace detail
}  // namespace hl
