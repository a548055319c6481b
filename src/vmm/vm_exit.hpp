// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>

namespace hl::vmm {

/// The vCPU's general registers, as the layers above the hypervisor seam see them.
struct registers {
    std::uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
    std::uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
    std::uint64_t rip = 0, rflags = 0;
};

/// Why KVM_RUN returned, reduced to what the sandbox needs. No KVM types leak past this seam.
struct vm_exit {
    enum class kind {
        io_out,          ///< `out` to `port` with `value` (zero-extended)
        io_in,           ///< `in` from `port`: guests never do this
        mmio,            ///< access to unbacked guest physical `address`
        shutdown,        ///< triple fault: a CPU exception with no IDT, or a failed vCPU state
        interrupted,     ///< KVM_RUN returned EINTR (a signal or immediate_exit)
        internal_error,  ///< KVM could not emulate or enter; `detail` holds the suberror
        other,           ///< any other exit reason; `detail` holds it
    };

    kind what = kind::other;
    std::uint16_t port = 0;
    std::uint32_t value = 0;
    std::uint64_t address = 0;
    std::uint32_t detail = 0;
};

/// A vCPU's complete state for snapshots: general, special and FPU/SSE registers. Opaque above the
/// hypervisor seam (the bytes are KVM's kvm_sregs and kvm_xsave: KVM_SET_FPU would not restore MXCSR).
struct saved_cpu {
    registers regs;
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
