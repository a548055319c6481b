// SPDX-License-Identifier: Apache-2.0
// The scheduler state of one async sandbox: its queue of operations, the one under way, and the
// sandbox itself, which lives on one worker. Operations start and run only on the worker's thread;
// submitting, cancelling and closing work from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "hl/detail/recycled.hpp"
#include "hl/runtime/detail/cover.hpp"
#include "hl/runtime/detail/worker.hpp"
#include "hl/sandbox.hpp"

namespace hl::detail {

class sandbox_state;

/// One operation on a sandbox. Exactly one of start() and abort() is called, once. Recycled: a
/// call made and completed on one worker allocates nothing after the first.
class sandbox_op : public recycled {
public:
    virtual ~sandbox_op() = default;
    /// On the worker thread, with the sandbox to itself. Ends, now or later (a call that yields
    /// between slices or waits for an async host function), with state.finished(*this).
    virtual void start(sandbox_state& state) = 0;
    /// Completes without running, with `ec` (asio::error::operation_aborted, or errc::usage_error
    /// for a released lease's operation), from any thread. Frees the operation.
    virtual void abort(std::error_code ec) noexcept = 0;

    std::uint64_t id = 0;                 // what a cancellation names; from sandbox_state::next_id()
    std::optional<std::uint64_t> holder;  // the epoch of the lease that made it, if one did
    bool cancellable = false;             // a guest call: a cancellation kills it while it runs
    bool background = false;              // the pool's restore: never started inline behind another op
};

/// While one is on the worker's stack, the thread is inside an operation: an operation submitted
/// meanwhile (by a host function) is queued, never started on top of it. The scheduler holds one
/// while it starts operations; a call holds one whenever it runs its guest, including the slices
/// and host answers that resume it from the worker's queue.
class operation_scope {
public:
    operation_scope() noexcept;
    ~operation_scope();
    operation_scope(const operation_scope&) = delete;
    operation_scope& operator=(const operation_scope&) = delete;
};

class sandbox_state : public std::enable_shared_from_this<sandbox_state> {
public:
    explicit sandbox_state(std::shared_ptr<worker> home);
    ~sandbox_state();
    sandbox_state(const sandbox_state&) = delete;
    sandbox_state& operator=(const sandbox_state&) = delete;

    worker& home() const noexcept { return *home_; }

    /// An id for an operation about to be submitted (cancellation may name it before that);
    /// unique in the process.
    static std::uint64_t next_id() noexcept;

    /// Queues `op`, owned from now on. On the worker's thread, outside any other sandbox's
    /// operation, with nothing queued or under way, it starts at once (`may_start_inline`):
    /// the zero-hop path. Otherwise the worker is asked to run it. Aborted with
    /// operation_aborted when the worker has stopped.
    void submit(sandbox_op* op, bool may_start_inline = true);

    /// From any thread: a queued operation is withdrawn and aborted (operation_aborted); one under
    /// way, if cancellable, is killed (the next call, if it has not entered the guest yet).
    void cancel(std::uint64_t id);

    /// On the worker, before the operation under way frees itself: it is over, the next one may
    /// start (now, or after the caller returns if pump() is on the stack).
    void finished(const sandbox_op& op);

    /// The handle let go (from any thread): queued operations are aborted (operation_aborted), a
    /// call under way is killed, and the sandbox is destroyed on its worker once nothing runs.
    /// `work` is held until then: the sandbox's host functions, and what they capture, go before
    /// the covered executor's run() can return.
    void close(cover work = {});

    // On the worker, for operations.
    multi_use_sandbox& sandbox();
    void set_sandbox(multi_use_sandbox sandbox);

    hl::interrupt_handle interrupt_handle() const;

    /// last_error() and calls belong to the sandbox's holder: a new holder (new_epoch(), a pool's
    /// release) empties last_error(), kills a call of the previous holder that is under way, and
    /// its operations still queued or not yet made complete with errc::usage_error.
    std::uint64_t epoch() const;
    void new_epoch();
    void set_last_error(std::uint64_t epoch, std::string message);
    std::string last_error() const;

private:
    void pump();                 // on the worker: starts operations until one is under way or none is left
    void kill_current_locked();  // with mutex_ held

    std::shared_ptr<worker> home_;

    mutable std::mutex mutex_;
    std::deque<sandbox_op*> queue_;
    sandbox_op* current_ = nullptr;  // started and not finished (possibly suspended)
    bool current_cancellable_ = false;
    bool pumping_ = false;      // pump() is on the worker's stack
    bool pump_posted_ = false;  // a pump() is queued on the worker
    bool closed_ = false;
    std::vector<std::uint64_t> cancelled_early_;  // cancellations that came before their submit
    std::uint64_t epoch_ = 0;
    std::string last_error_;
    std::optional<hl::interrupt_handle> handle_;

    cover closing_work_;  // from close() until sandbox_ is gone (declared first: freed last)
    std::optional<multi_use_sandbox> sandbox_;  // created, used and destroyed on the worker
};

}  // namespace hl::detail
