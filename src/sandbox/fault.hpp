// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "hl/error.hpp"
#include "vmm/cpu_state.hpp"

namespace hl::detail {

/// The guest's registers when KVM reported the shutdown, with CR2 and the FS and GS bases.
using vmm::cpu_state;

/// How the guest (at CPL3) sees one 4 KiB page. `user` false means the page is mapped for the
/// supervisor only, which the guest can neither read nor execute.
struct page_info {
    bool present = false, user = false, writable = false, executable = false;
};

/// Everything the classifier may look at. All three callables must be set; they are called only
/// during classify_fault and never after it returns.
struct fault_context {
    cpu_state cpu;
    /// Copies up to out.size() bytes of guest memory at addr into out; returns how many were readable
    /// (stops at the first page the guest could not read; 0 if none).
    std::function<std::size_t(std::uint64_t addr, std::span<std::byte> out)> read;
    /// The guest's view of the 4 KiB page holding addr.
    std::function<page_info(std::uint64_t addr)> page;
    /// Names the region holding addr for messages: "null page", "heap", "code", "stack guard page", ...
    std::function<std::string(std::uint64_t addr)> describe;
    /// [begin, end): the guard page below the stack; an access there is a stack overflow.
    std::uint64_t stack_guard_begin = 0, stack_guard_end = 0;
    /// [begin, end): the I/O ports the guest may use. in and out on them exit to the host instead
    /// of faulting, so they never explain a fault.
    std::uint32_t io_ports_begin = 0, io_ports_end = 0;
};

/// What the guest did wrong, as precisely as its registers and memory tell.
struct fault_report {
    hl::errc code = hl::errc::guest_fault;  ///< guest_fault, or stack_overflow for the guard page
    std::string kind;                       ///< "page fault (write)", "invalid opcode", "breakpoint (int3)", ...
    /// The instruction the report is about: RIP for a fault; for a trap (int3, single-step) or a system
    /// call, which the CPU reports with RIP elsewhere, the instruction that caused it, or RIP if unknown.
    std::uint64_t rip = 0;
    std::optional<std::uint64_t> address;  ///< the faulting data or fetch address when known
    std::string instruction;               ///< "mov dword ptr [rax], 1", or "" if unknown or undecodable
    std::string message;                   ///< one line for users, naming the addresses and their regions
};

/// Names the CPU exception that ended a guest run (KVM_EXIT_SHUTDOWN: no IDT, so every exception
/// triple-faults and the vector is lost) by decoding the instruction at RIP and checking the
/// addresses it touches against ctx.page, and by the traces that traps and system calls leave
/// (RFLAGS.TF, an int3 just before RIP, RIP at the system call entry with RCX after a syscall).
/// Never throws for any guest state (a hostile guest controls every register and byte); it throws
/// only what the callables throw, or std::bad_alloc. Thread-safe: it keeps no state between calls.
fault_report classify_fault(const fault_context& ctx);

/// Where a trapped `syscall` returns to, and the RFLAGS it saved.
struct system_call_site {
    std::uint64_t return_rip;
    std::uint64_t saved_rflags;
};

/// The system call the guest made, when the vCPU stopped (KVM_EXIT_SHUTDOWN) because of one: under
/// PVM at vmm::syscall_entry with RCX after a `syscall` instruction, on hardware KVM at the `syscall`
/// (#UD) with no page fault. Nothing else the guest can do stops in either state.
std::optional<system_call_site> trapped_system_call(const fault_context& ctx);

}  // namespace hl::detail
