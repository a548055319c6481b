// SPDX-License-Identifier: Apache-2.0
// The vCPU's state as the layers above the hypervisor seam see it. No KVM types here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hl::vmm {

/// Where `syscall` at CPL3 enters CPL0: MSR LSTAR, which the VM sets to this unmapped, canonical
/// user-half address. Under this machine's KVM (PVM) the CPU goes there even with EFER.SCE clear, the
/// fetch faults, and the vCPU stops with RIP here, RCX the return address, R11 the saved RFLAGS and
/// RAX the call number. No other run of a guest ends at this address by accident: a null or wild
/// pointer does not land on it. (Hardware KVM raises #UD at the `syscall` itself instead.)
inline constexpr std::uint64_t syscall_entry = 0x7fff'0000'0000ull;

/// RFLAGS as the host enters a guest: bit 1 (always set), IOPL 0, interrupts and traps off.
inline constexpr std::uint64_t rflags_reserved = 0x2;

/// The vCPU's registers as the host reads them: the general registers (the first eighteen fields,
/// in KVM's order), CR2, and the FS and GS bases, which the guest may have changed with
/// wrfsbase/wrgsbase. The host resets CR2 to 0 before every run, so a non-zero CR2 means a page
/// fault at that address happened, and no trap did: without an IDT a trap ends the run before a
/// page fault could.
struct cpu_state {
    std::uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
    std::uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
    std::uint64_t rip = 0, rflags = 0;
    std::uint64_t cr2 = 0;
    std::uint64_t fs_base = 0, gs_base = 0;
};

/// A vCPU's complete state for snapshots: general, special and FPU/SSE registers. Opaque above the
/// hypervisor seam (the bytes are KVM's kvm_sregs and kvm_xsave: KVM_SET_FPU would not restore MXCSR).
struct saved_cpu {
    cpu_state regs;  // the general registers; the special ones are in sregs
    alignas(8) std::byte sregs[312];
    alignas(8) std::byte xsave[4096];
};

/// The CPU state the host sets up once per vCPU and puts back after a fault.
struct cpu_setup {
    std::uint64_t gdt_base = 0;
    std::uint16_t gdt_limit = 0;
    std::uint64_t tss_base = 0;
    std::uint32_t tss_limit = 0;
    std::uint64_t cr3 = 0;
};

}  // namespace hl::vmm
