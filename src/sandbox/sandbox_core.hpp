// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hl/config.hpp"
#include "hl/error.hpp"
#include "hl/guest_call.hpp"
#include "hl/host_function.hpp"
#include "hl/log.hpp"
#include "hl/snapshot.hpp"
#include "hl/value.hpp"
#include "mem/dirty_tracker.hpp"
#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "sandbox/call_buffers.hpp"
#include "sandbox/call_state.hpp"
#include "sandbox/driving_thread.hpp"
#include "sandbox/host_services.hpp"
#include "sandbox/interrupt.hpp"
#include "sandbox/poisoning.hpp"
#include "sandbox/sandbox_image.hpp"
#include "vmm/vm.hpp"

namespace hl::detail {

/// A sandbox behind the public typestate classes: its VM (once initialised), its memory, the exit
/// loop and poison. It drives the parts that own the other jobs: the image it was built from
/// (sandbox_image), the wire buffers (call_buffers), the host's functions and handlers
/// (host_services) and the dirty-page bookkeeping for snapshots (mem::dirty_tracker). Driven by one
/// thread at a time.
class sandbox_core {
public:
    /// Validates and loads the guest ELF into fresh memory; no VM yet.
    static std::unique_ptr<sandbox_core> create(std::vector<std::byte> elf, const sandbox_config& config);

    /// A ready sandbox whose memory maps `snap` copy-on-write; the guest's initialisation is not run.
    static std::unique_ptr<sandbox_core> create_from(std::shared_ptr<const snapshot> snap);

    /// Creates the VM and runs the guest's initialisation.
    void initialize();

    /// Snapshot and restore.
    std::shared_ptr<const snapshot> take_snapshot();
    void restore(const std::shared_ptr<const snapshot>& snap);

    /// Waits for an operation that another thread runs on the sandbox to end (killing its guest
    /// call) before freeing anything.
    ~sandbox_core();

    /// Runs a guest function to its end: start() and run() on a call_state of its own, within
    /// `limits` (merged with the sandbox's defaults: errc::timed_out, errc::cpu_budget_exceeded).
    return_value call(std::string_view name, value_type return_type, std::span<const argument> args,
                      const call_limits& limits = {});
    /// As call(), but a kill or the deadline is not thrown: it comes back in `failure` and
    /// `reason`, and the result is empty. Every other failure throws as call() does. A throw and
    /// its catch cost 5-13 us here, as much again as the kick itself on a warm vCPU: the nothrow
    /// overloads take this way, so that their interrupt latency is the kick and little more.
    return_value call(std::string_view name, value_type return_type, std::span<const argument> args,
                      const call_limits& limits, std::error_code& failure, std::string& reason);

    /// Starts `c`: writes the call into the input buffer, stages the entry registers and marks the
    /// call running; nothing runs yet. `limits`, merged with the defaults, bound it from now on. A
    /// `sliced` call holds the sandbox until it ends (open_call()). Throws, changing nothing:
    /// poisoned, argument_too_large, usage_error (inside a callback, or another call is open).
    void start(call_state& c, std::string_view name, value_type return_type, std::span<const argument> args,
               const call_limits& limits, call_state::mode how);

    /// Runs `c` on the calling thread until it finishes (c.result holds the value), its `slice` (if
    /// positive) is over, or it waits for an asynchronous host function. The answer to a host call
    /// the call waited for must be in `c`. A kill or the deadline ends the call with status::failed
    /// (c.failure says which); any other failure throws (and poisons) as call() does. Either way the
    /// call is then over.
    guest_call::status run(call_state& c, std::chrono::nanoseconds slice);
    /// After run() returned status::failed: the failure, as the exception call() throws.
    static error failure_of(const call_state& c);

    /// Ends an unfinished call that will not run again (its guest_call is gone): poisons the sandbox
    /// with errc::cancelled. Under the claim.
    void abandon(call_state& c) noexcept;

    /// The unfinished sliced call that holds the sandbox, if any. Read under the claim.
    const call_state* open_call() const noexcept { return open_call_; }

    const std::shared_ptr<interrupt_state>& interrupt() const noexcept { return interrupt_; }

    bool poisoned() const noexcept { return !poison_reason_.empty(); }

    /// What the sandbox's calls have cost, initialisation included. Under the claim.
    const call_usage& usage() const noexcept { return usage_; }
    /// The limits of calls that set none of their own: sandbox_config::call_limits unless replaced
    /// (a pool's or runtime's defaults, hl::call_limits). Under the claim.
    const call_limits& default_limits() const noexcept { return default_limits_; }
    void set_default_limits(const call_limits& limits) noexcept { default_limits_ = limits; }

    /// Claimed by the public API around every call, snapshot, restore and registration, and by
    /// guest_call around every run().
    driving_thread& driver() noexcept { return driver_; }

    /// The public sandbox lets go of its core (destroyed or assigned over). Frees it at once, except
    /// when something still runs on it or refers to it:
    /// - a guest_call refers to it: the core lives until the last one is destroyed; an unfinished
    ///   call is killed and ends with errc::usage_error at once (inside run()) or at its next run();
    /// - this thread is inside one of its host functions or handlers: freeing it would pull memory
    ///   and VM from under the running call; the call ends with errc::usage_error once the callback
    ///   returns, and whoever holds the claim frees it with take_abandoned() after it has unwound.
    static void let_go(std::unique_ptr<sandbox_core> core) noexcept;
    bool abandoned() const noexcept { return sandbox_gone_.load(); }
    std::unique_ptr<sandbox_core> take_abandoned() noexcept;

    /// A guest_call refers to this core from now on, or no longer (the last one frees an abandoned
    /// core).
    void attach_call() noexcept;
    static void detach_call(sandbox_core* core) noexcept;

    /// The host's functions and handlers, which may change from inside a callback.
    host_services& services() noexcept { return services_; }
    /// Sets the host's log level and writes it into the PEB, for the guest to filter by.
    void set_log_level(log_level level);

    /// Records a trace event `name` (and `more` after it, with a space) from `start` (monotonic_ns())
    /// to `end` (0: now), if the image's recorder records. An event that memory cannot be had for is
    /// left out.
    void trace(std::string_view name, std::string_view more, std::string_view detail, std::int64_t start,
               bool ends_call = false, std::int64_t end = 0) noexcept;
    bool tracing() const noexcept;

private:
    class kvm_dirty_log;
    static std::uint64_t next_id() noexcept;

    sandbox_core(std::shared_ptr<const sandbox_image> image, mem::guest_memory memory);

    /// Throws unless the sandbox may be driven now (not from inside one of its own callbacks).
    void check_not_in_callback(const char* what) const;
    /// Writes the host's log level into the PEB.
    void apply_log_level();

    /// Stages the entry registers for `op` and marks `c` running.
    void begin(call_state& c, std::uint64_t op, std::string_view name, value_type return_type,
               const call_limits& limits, call_state::mode how);
    /// The exit loop: runs until the guest reports done, the slice is over, an asynchronous host
    /// function must answer, or a kill or the deadline ends the call (status::failed, poisoned).
    /// Throws (and poisons) on any other way out: abort, fault, a protocol violation.
    guest_call::status drive(call_state& c, run_frame& frame);
    /// Marks `c` over.
    void end(call_state& c, call_state::phase how) noexcept;

    /// run() without the metrics.
    guest_call::status run_unrecorded(call_state& c, std::chrono::nanoseconds slice);
    /// `c` is over with `outcome`: into the image's metrics.
    void record(const call_state& c, std::error_code outcome) noexcept;
    /// Adds what `frame` measured to the call's and the sandbox's CPU time.
    void account(call_state& c, const run_frame& frame) noexcept;
    /// Ends `c` by its kill or deadline, without an exception: it is how calls end under a
    /// scheduler, and right after a long guest run the host's caches are cold, so that one throw
    /// costs 25-30 us here (a kick of the vCPU costs about as much). Poisons; returns failed.
    guest_call::status interrupted(call_state& c, errc why);


    /// Finishes whatever instruction the last exit left half done in KVM (vm::complete_pending), so
    /// that nothing of this task runs after the next restore. Poisons with errc::vm_error, for
    /// good, when KVM does not settle.
    void settle_vcpu();

    /// Creates the VM and hooks it up to the interrupt state.
    void create_vm();

    bool in_entry_stub(std::uint64_t rip) const noexcept {
        return rip - layout_.entry_stub().value < mem::page_size;
    }

    return_value read_result(std::string_view name, value_type return_type);

    /// The exit loop's ways into the host services; they poison on what the services report
    /// (detail::poisoning).
    bool serve_host_call(call_state& c);
    /// For traces: the host function the guest's call in the output buffer names (empty if unreadable).
    std::string host_call_name() const noexcept;
    void answer_host_call(call_state& c);
    void deliver_output(std::uint32_t kind);

    [[noreturn]] void poison_and_throw(errc code, const std::string& message);
    [[noreturn]] void poison_and_throw(const poisoning& failure);
    /// For what the guest did to itself (errc::guest_fault, stack_overflow, guest_aborted): when the
    /// configuration asks for crash dumps, writes a core file of the guest as `cpu` left it (RIP at
    /// the instruction to show) and returns how the failure's message ends ("; core written to
    /// ...", or "; no core written: ..."); "" when dumps are off. Never throws. Call it before the
    /// vCPU is reset (which clears the x87/SSE registers).
    std::string crash_dump(const vmm::cpu_state& cpu, int signal,
                           std::optional<std::uint64_t> fault_address = std::nullopt) noexcept;
    /// As above, with the registers the vCPU holds now (read only when a core is to be written).
    std::string crash_dump(int signal) noexcept;
    [[noreturn]] void throw_fault();
    /// For a Linux program stopped by a system call: serves it and readies the vCPU to go on. False
    /// when the stop was not a system call (a fault). Throws (poisoning) when the program exited.
    bool serve_system_call(call_state& c);
    [[noreturn]] void throw_abort(std::uint32_t code);

    std::shared_ptr<const sandbox_image> image_;
    const mem::layout& layout_;  // image_->layout
    mem::guest_memory memory_;
    std::optional<vmm::vm> vm_;
    call_buffers buffers_{memory_, layout_};
    host_services services_;
    mem::dirty_tracker dirty_{memory_.pages()};
    std::string poison_reason_;
    call_limits default_limits_ = image_->call_limits;
    call_usage usage_;
    const std::uint64_t id_ = next_id();  // process-wide, for traces
    bool vcpu_unusable_ = false;  // KVM kept a half-done instruction: no restore may reuse this vCPU
    // Set by a restore, which leaves the extended registers (x87, SSE, AVX) to the guest: the snapshot
    // whose registers are still to be loaded. Calls enter through the entry stub, which loads them
    // from the register image, until a run has left the stub (the load is done).
    std::shared_ptr<const snapshot> registers_pending_;
    std::shared_ptr<interrupt_state> interrupt_ = std::make_shared<interrupt_state>();
    driving_thread driver_;
    call_state* open_call_ = nullptr;  // under the claim
    std::atomic<bool> sandbox_gone_{false};  // see let_go()
    std::mutex lifetime_;  // orders let_go() against detach_call()
    int guest_calls_ = 0;  // under lifetime_
    std::unique_ptr<sandbox_core> self_;  // under lifetime_: the core of a sandbox that is gone
};

}  // namespace hl::detail
