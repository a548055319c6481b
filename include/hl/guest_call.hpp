// SPDX-License-Identifier: Apache-2.0
// A guest call that a scheduler drives in time slices, instead of running it to its end.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "hl/call_limits.hpp"
#include "hl/error.hpp"
#include "hl/host_function.hpp"
#include "hl/value.hpp"

namespace hl {

namespace detail {
struct call_state;
}

/// A call into a multi_use_sandbox that runs in slices (made by multi_use_sandbox::start_call()).
/// This is what the async runtime schedules on its worker threads; multi_use_sandbox::call() is the
/// same call run to its end in one go.
///
/// run() enters the guest on the calling thread and returns when the call has finished, when its
/// slice is over (the guest stopped between two of its instructions, its state intact, unaware),
/// or when the guest called a host function that has an asynchronous form
/// (host_function::start_async): the guest then waits, and the scheduler runs that function and
/// answers with complete_host_call() or fail_host_call(). Between two run()s the thread is free to
/// run other sandboxes' calls.
///
/// The sandbox belongs to the call until it has finished: every run() must come from the thread
/// that started it, and the sandbox's own members fail with errc::usage_error meanwhile (kill()
/// through its interrupt_handle works from any thread, between slices too). A call's deadline and
/// a kill are honoured at every slice boundary, between slices and while a host call waits: the
/// next run() ends the call with errc::timed_out or errc::cancelled.
///
/// Move-only; it must not be moved or destroyed while its run() runs. Destroying a call that has
/// not finished abandons it: the sandbox is poisoned (errc::cancelled, "abandoned", until
/// restored) and free again. The sandbox may be moved meanwhile (the call follows it). If the
/// sandbox is destroyed first, its memory and VM live on until the guest_call is gone: an
/// unfinished call is killed and ends with errc::usage_error (inside run(), or at its next run()),
/// and a finished call's result can still be taken.
class guest_call {
public:
    enum class status {
        finished,   ///< take_result() has the guest's result
        sliced,     ///< the slice is over; run() again to go on
        host_call,  ///< the guest waits for an asynchronous host function: see pending_host_call()
        failed,     ///< run_nothrow() only: the call ended with an error, see failure()
    };

    guest_call() noexcept;
    guest_call(guest_call&& other) noexcept;
    guest_call& operator=(guest_call&& other) noexcept;
    ~guest_call();

    /// Runs the guest until one of the ends above; a `slice` of zero or less means no slice limit.
    /// A slice is at least 50 us, and starts again if it was over before the guest was entered: one
    /// VM entry costs tens of microseconds under PVM, and shorter slices would make no progress.
    /// Each slice end costs about one kick of the vCPU (a signal and a VM exit).
    /// Throws hl::error exactly as multi_use_sandbox::call() does (and poisons for the same codes);
    /// the call is then over. Throws errc::usage_error, changing nothing, on an empty or finished
    /// call, from another thread, from inside one of the sandbox's own callbacks, or while a host
    /// call is still unanswered.
    status run(std::chrono::nanoseconds slice = {});

    /// As run(), except that a failure which ends the call is returned as status::failed rather
    /// than thrown; failure() then has it. Misuse still throws errc::usage_error and changes
    /// nothing. For schedulers, where a kill or a deadline is a normal end: right after a long guest
    /// run the host's caches are cold, and one exception costs about as much as the kick itself.
    status run_nothrow(std::chrono::nanoseconds slice = {});

    /// After status::failed: the error run() would have thrown (code and message; what() is the
    /// message). Throws errc::usage_error when the call did not fail that way.
    error failure() const;

    /// After run() returned status::finished: the result, once (errc::usage_error otherwise).
    return_value take_result();

    /// After run() returned status::host_call, until the next run(): the function the guest called
    /// (its start_async is set), its name, and the arguments, which view guest memory and stay
    /// valid until then (the guest is stopped; the answer is written by the next run()). Throws
    /// errc::usage_error when no host call waits.
    struct host_request {
        const host_function* function = nullptr;
        std::string_view name;
        std::span<const argument> arguments;
    };
    host_request pending_host_call() const;

    /// Answers the waiting host call: the next run() resumes the guest with `result` (which must
    /// be of the function's result type; otherwise the guest gets a host-function error), or with
    /// the failure `message` (as a synchronous host function that threw: "host function 'X'
    /// failed: message", cut to fit). From any thread, once: a second answer, or one when no host
    /// call waits, fails with errc::usage_error. Nothing is written before that next run().
    void complete_host_call(return_value result);
    void fail_host_call(std::string message);

    /// True once the call was killed or has passed its deadline: a scheduler waiting for an async
    /// host function stops it early, answers, and the next run() ends the call. After the end:
    /// whether it was so when the call ended. From any thread.
    bool interrupted() const noexcept;
    /// What the call has cost so far (hl::call_usage; calls is 1), from the call's thread between
    /// its run()s and after its end. cpu_time counts only while the call has a CPU budget or the
    /// sandbox measures it (sandbox_config::measure_cpu_time).
    call_usage usage() const;
    /// The call's limits: its own, merged with the sandbox's defaults.
    hl::call_limits limits() const;
    /// For schedulers: records in the sandbox's trace (sandbox_config::trace) that the call waited
    /// from `since` until it started (start_call()). Nothing when the trace was not recording
    /// as the call started, or on an empty call.
    void trace_queued(std::chrono::steady_clock::time_point since) const noexcept;
    /// When the call must end by, if it has a deadline.
    std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept;

    /// `f` runs on the killer's thread, with no lock of the sandbox held, each time the call is
    /// killed while it is not inside the guest (between slices or waiting for a host call; also
    /// inside run() but outside KVM_RUN, in a synchronous host function, where run() ends the call
    /// itself), so that a scheduler can act at once. It must not block, throw or touch the sandbox.
    /// Set it from the call's thread; it goes with the call's end (a kill racing with that end may
    /// still run it just after), and on a finished call this is a no-op.
    void set_interrupt_listener(std::function<void()> f);

    /// For a thread that exists to run guest calls back to back (a scheduler's worker; the
    /// runtime's workers do it): the thread's slice and deadline timer is armed only when no
    /// earlier arming is pending and stays armed when a call ends, and the interrupt signal, once
    /// unblocked for a call, stays unblocked (code on the thread must not block it again). That
    /// saves the three system calls a call otherwise makes around a slice. The price: an arming
    /// made for an earlier call may go off in a later one (one more exit of that guest, which then
    /// re-arms for itself) or, at most one slice after the last call, in a blocking system call of
    /// the thread: the signal is SA_RESTART, so most restart, but those the kernel never restarts
    /// (poll, epoll_wait, nanosleep, ...) fail with EINTR. Off by default; for the calling thread only.
    /// Turning it off disarms the timer (the signal stays as it is).
    static void dedicate_this_thread(bool on) noexcept;

    /// True from the end of the call (finished or failed) on, and for an empty call.
    bool done() const noexcept;
    explicit operator bool() const noexcept { return state_ != nullptr; }

private:
    friend class multi_use_sandbox;
    explicit guest_call(std::unique_ptr<detail::call_state> state) noexcept;
    void reset() noexcept;
    detail::call_state& usable(const char* what) const;
    status run_nothrow_or_throw(std::chrono::nanoseconds slice, bool catch_failures);
    std::unique_ptr<detail::call_state> state_;
};

}  // namespace hl
