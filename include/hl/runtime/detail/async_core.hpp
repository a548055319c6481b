// SPDX-License-Identifier: Apache-2.0
// The non-template heart of async_sandbox: the vCPU worker, the sandbox that lives on it, and the
// bookkeeping that lets a cancellation find the operation it belongs to.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "hl/runtime/detail/vcpu_worker.hpp"
#include "hl/sandbox.hpp"

namespace hl::detail {

/// One asynchronous operation's place in its lifecycle. Moves queued -> running under the worker's
/// queue lock; a cancellation reads it under the same lock (queued: withdraw) or under the
/// core's run lock (running: kill).
struct op_state {
    enum phase_t : int { queued, running, done };
    std::atomic<int> phase{queued};
    // Under the worker's queue lock: the job's place in the queue, once it has one, and a
    // cancellation that came before that.
    vcpu_worker::ticket ticket{};
    bool in_queue = false;
    bool cancel_early = false;
};

class async_core {
public:
    /// A new core, owned so that it is never destroyed on its own vCPU thread: if its last owner
    /// lets go there (from one of the sandbox's host functions or handlers, in the middle of a call),
    /// another thread destroys it once that call has returned, since a thread cannot join itself and
    /// the call is still using the sandbox.
    static std::shared_ptr<async_core> create();

    ~async_core();  // kills a running call, aborts queued ones, destroys the sandbox on its thread
    async_core(const async_core&) = delete;
    async_core& operator=(const async_core&) = delete;

    /// Queues `job` for `op` (null for operations that cannot be cancelled). Without `wake`, see
    /// vcpu_worker::push().
    void submit(const std::shared_ptr<op_state>& op, std::unique_ptr<worker_job> job, bool wake = true);
    /// Runs jobs queued without waking the worker.
    void wake() { worker_.wake(); }

    /// From any thread: a queued operation is withdrawn and aborted; a running call is killed.
    void cancel(const std::shared_ptr<op_state>& op);

    /// On the vCPU thread.
    void create(const std::function<multi_use_sandbox()>& make);
    multi_use_sandbox& sandbox();
    /// Brackets a call so that cancel() can tell whether `op` is the one running. An operation made
    /// by a holder (`holder`: the epoch it holds the sandbox in) may run only while that holder still
    /// holds it: begin() returns false, and the operation must not touch the sandbox, once a new
    /// holder came. Checked under the same lock new_epoch() takes, so a call either never starts
    /// or is running when the holder changes, and new_epoch() then stops it.
    bool begin(op_state* op, std::optional<std::uint64_t> holder = std::nullopt);
    void end(op_state* op);

    /// True while a call runs (between begin() and end() of a cancellable operation).
    bool busy() const;

    hl::interrupt_handle interrupt_handle() const;

    /// last_error() belongs to the holder of the sandbox: operations record their failure only if
    /// no new holder came since they started. Take the epoch when an operation starts.
    std::uint64_t epoch() const;
    /// A new holder: last_error() is empty, operations started before record nothing, a call of the
    /// previous holder that is still running is killed (it would hold the sandbox from the new one),
    /// and its calls still queued will not run (see begin()).
    void new_epoch();
    void set_last_error(std::uint64_t epoch, std::string message);
    std::string last_error() const;

private:
    async_core();

    vcpu_worker worker_;
    std::optional<multi_use_sandbox> sandbox_;  // created and destroyed on the worker thread
    std::optional<hl::interrupt_handle> handle_;
    mutable std::mutex run_lock_;
    op_state* running_ = nullptr;
    mutable std::mutex error_lock_;
    std::uint64_t epoch_ = 0;  // changed under run_lock_ and error_lock_, read under either
    std::string last_error_;
};

}  // namespace hl::detail
