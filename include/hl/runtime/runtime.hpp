// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "hl/call_limits.hpp"

namespace hl {

namespace detail {
class worker;
}

/// Sizes of an hl::runtime.
struct runtime_options {
    std::size_t workers = 0;  ///< worker threads; 0: one per core
    /// How long a guest runs before its worker serves its other work: a long call then goes on in
    /// slices, unaware. The default is measured, see docs/DESIGN.md ("Workers and slices").
    std::chrono::nanoseconds slice = std::chrono::milliseconds(1);
    /// The share of a busy worker that a call running past its slice gets, in (0, 1]. After each
    /// slice such a call waits while its worker has other work, at most slice × (1 / share − 1),
    /// then runs its next slice; on a worker with nothing else to run it goes on at once, and a kill
    /// or its deadline ends the wait at once. 1 (the default): it takes turns with whatever became
    /// ready during its slice, which leaves a runaway guest most of its worker, since short calls
    /// mostly wait on their sockets. A server that must keep serving beside runaway guests sets
    /// 0.25 or so (its demo, examples/06_server, does). The share is each such call's, and "nothing
    /// else to run" is a poll that ran nothing, so work waiting on the worker's own timers and
    /// sockets is protected less than work that is ready; see docs/DESIGN.md ("A long call's share").
    double sliced_share = 1.0;
    /// The defaults of calls on the runtime's sandboxes that set no limits of their own: a deadline,
    /// a CPU-time budget, or both, so that no call runs unbounded by accident. They come before the
    /// sandbox's own defaults (sandbox_config::call_limits) and after a pool's (see hl::call_limits).
    /// None by default.
    hl::call_limits call_limits{};
};

/// The async runtime's worker threads: a fixed set, each an Asio execution context (an io_context
/// run by one thread). Every async_sandbox lives on one worker for its whole life and its vCPU
/// runs only on that thread, so the number of threads does not grow with the number of sandboxes.
/// The application may run its own coroutines on a worker's executor (get_executor()): a call
/// awaited there on a sandbox of the same worker runs the guest right there, with no thread switch.
///
/// A guest call runs in slices (runtime_options::slice): when one is over, the worker serves its
/// other handlers and sandboxes, then the guest continues where it stopped.
///
/// Destroy the sandboxes and pools that live on a runtime before the runtime; its destructor waits
/// for the operations in flight to finish. Operations started on a sandbox whose runtime is gone
/// complete with asio::error::operation_aborted.
class runtime {
public:
    using executor_type = asio::io_context::executor_type;

    explicit runtime(runtime_options options = {});
    ~runtime();
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    /// The process-wide runtime with default options (one worker per core), created on first use
    /// and never destroyed: where a sandbox goes when it is not created on a worker's executor.
    static runtime& default_runtime();

    std::size_t size() const noexcept { return workers_.size(); }
    std::chrono::nanoseconds slice() const noexcept { return slice_; }

    /// The executor of worker `index` (< size(); otherwise hl::error with errc::usage_error).
    executor_type get_executor(std::size_t index) const;
    /// The calling thread's worker's executor if it is one of this runtime's workers, else the
    /// next worker's in turn: spreads work over the workers.
    executor_type get_executor();

    /// True on one of this runtime's worker threads.
    bool running_in_this_thread() const noexcept;

    /// For the library's own placement: the calling thread's worker if it is one of these, else
    /// the next in turn; and worker `index`.
    const std::shared_ptr<detail::worker>& worker_for_placement();
    const std::shared_ptr<detail::worker>& worker_at(std::size_t index) const;

private:
    std::chrono::nanoseconds slice_;
    std::vector<std::shared_ptr<detail::worker>> workers_;
    std::size_t next_ = 0;  // the worker get_executor() gives next, atomically updated
};

}  // namespace hl
