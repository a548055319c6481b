// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>

namespace hl {

/// What one guest call may take before it is stopped. Zero (the default) means no limit.
///
/// - `timeout`: wall-clock time from the call's start. Past it the call fails with errc::timed_out.
/// - `cpu_time`: CPU time of the thread that drives the call, counted only while the call runs on
///   that thread: the guest, the library's exit handling, and synchronous host functions. Time the
///   call spends waiting is not counted: for an asynchronous host function, between slices, or while
///   the thread is preempted. Past it the call fails with errc::cpu_budget_exceeded. The budget is
///   checked when the guest could first have used it up, so a call stops within tens of
///   microseconds of its budget on a thread that is not preempted (benchmarks/README.md gives the
///   overshoot measured here).
///
/// Both poison the sandbox, as a kill does. A call's limits come from, field by field, the first
/// that sets the field: the call itself (call_for, async_call_for), then the defaults of the pool or
/// runtime that runs it (pool_options::call_limits, runtime_options::call_limits), then the sandbox's
/// configuration (sandbox_config::call_limits).
struct call_limits {
    std::chrono::nanoseconds timeout{};
    std::chrono::nanoseconds cpu_time{};

    /// Each field of *this that is zero, taken from `defaults`.
    constexpr call_limits or_else(const call_limits& defaults) const noexcept {
        return {timeout.count() > 0 ? timeout : defaults.timeout, cpu_time.count() > 0 ? cpu_time : defaults.cpu_time};
    }
    constexpr bool any() const noexcept { return timeout.count() > 0 || cpu_time.count() > 0; }
    friend constexpr bool operator==(const call_limits&, const call_limits&) = default;
};

/// What a sandbox's calls have cost so far (multi_use_sandbox::usage()), or one call
/// (guest_call::usage()). Counted from the sandbox's creation; restores do not reset it.
struct call_usage {
    std::uint64_t calls = 0;         ///< calls started, initialisation not included
    std::uint64_t vm_exits = 0;      ///< times the vCPU left the guest (KVM_RUN returned)
    std::uint64_t host_calls = 0;    ///< host functions the guest called
    std::uint64_t system_calls = 0;  ///< Linux system calls served (guests that are Linux programs)
    /// CPU time of the driving thread while the calls ran (as call_limits::cpu_time counts it). Only
    /// measured where a call has a CPU budget or the sandbox's configuration asks for it
    /// (sandbox_config::measure_cpu_time): reading the thread's CPU clock is a system call, about
    /// 0.5 us here, twice per run of a call.
    std::chrono::nanoseconds cpu_time{};

    call_usage& operator+=(const call_usage& other) noexcept {
        calls += other.calls;
        vm_exits += other.vm_exits;
        host_calls += other.host_calls;
        system_calls += other.system_calls;
        cpu_time += other.cpu_time;
        return *this;
    }
};

}  // namespace hl
