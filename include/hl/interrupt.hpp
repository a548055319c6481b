// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>

namespace hl {

namespace detail {
struct interrupt_state;
}

/// Stops a sandbox's running guest call from any thread (Hyperlight's `InterruptHandle`). Copyable,
/// thread-safe, and safe to keep after its sandbox is gone.
class interrupt_handle {
public:
    /// Ends the call running in the sandbox with errc::cancelled (the sandbox is then poisoned until
    /// restored), typically within tens of microseconds; a kill during a host function takes effect
    /// when the guest resumes. Returns true if a call was running. A kill while no call runs does
    /// nothing and does not affect later calls; nor does a kill after the sandbox is gone.
    ///
    /// The vCPU thread is kicked with `kvm_run->immediate_exit` and a real-time signal (see
    /// sandbox_config::interrupt_signal_offset), re-sent while the guest keeps running.
    bool kill() const;

    /// True while a guest call runs in the sandbox.
    bool running() const noexcept;

    /// For callers that serialize calls themselves (an executor, a queue): like kill(), but if no
    /// call is running yet, the next call to start is cancelled as soon as it starts. disarm()
    /// withdraws that once the call it was meant for is over, so that a later call is not hit.
    void kill_current_or_next() const;
    void disarm() const;

private:
    friend class multi_use_sandbox;
    explicit interrupt_handle(std::shared_ptr<detail::interrupt_state> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<detail::interrupt_state> state_;
};

/// For host functions: true once the guest call that invoked the running host function has been
/// killed or has passed its deadline on this thread (it will end with errc::cancelled or
/// errc::timed_out as soon as the host function returns). Long host functions can poll it to stop
/// early. False outside a guest call. While the host function runs another sandbox's call on this
/// thread, the outer call's deadline is seen once that call has returned.
bool current_call_interrupted() noexcept;

/// How many of the library's interrupt signals, process-wide, arrived at a thread that was not
/// running a guest (a kill that raced with the end of a call, or a deadline that fired as the call
/// returned). Harmless; counted so that they can be watched.
std::uint64_t stale_interrupt_signals() noexcept;

}  // namespace hl
