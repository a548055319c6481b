// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "mem/guest_memory.hpp"
#include "mem/page_bitmap.hpp"
#include "util/mapping.hpp"
#include "util/unique_fd.hpp"
#include "vmm/cpu_state.hpp"
#include "vmm/vm_exit.hpp"

struct kvm_run;

namespace hl::vmm {

/// One KVM virtual machine with one memory slot and one vCPU in 64-bit long mode at CPL3. The
/// hypervisor seam: nothing above it sees a KVM structure.
///
/// Thread-safety: a vm is driven by one thread at a time (run, registers, reset).
class vm {
public:
    /// Creates the VM, maps `memory` as slot 0 at guest physical 0 and creates the vCPU with `setup`.
    /// Throws hl::error(errc::kvm_unavailable) with what to do when /dev/kvm is missing or not
    /// permitted, std::system_error for other failures.
    static vm create(const mem::guest_memory& memory, const cpu_setup& setup);

    vm(vm&&) noexcept = default;
    vm& operator=(vm&&) noexcept = default;
    ~vm();

    /// Enters the guest until it exits. Registers set with set_registers() go in with no extra ioctl
    /// (KVM_CAP_SYNC_REGS); after the exit, registers() holds the guest's registers.
    vm_exit run();

    /// True when the last exit left an instruction half done inside KVM: an `in`, `ins` or `rep ins`
    /// waiting for its data, or an MMIO access. The next KVM_RUN finishes it *after* applying any
    /// registers staged since, with the operands it decoded at the exit: it would write its data and
    /// move RIP behind the old instruction, inside whatever state was restored in the meantime.
    bool has_pending_completion() const noexcept { return pending_; }

    /// Finishes a pending instruction without running guest code (a KVM_RUN with immediate_exit set;
    /// the data it reads is zero, into the current guest memory) and drops any exception that raised,
    /// so that what is staged next is exactly what runs next. A no-op when nothing is pending. Throws
    /// hl::error(errc::vm_error) when KVM does not settle; the vCPU must then not run again.
    void complete_pending();

    /// kvm_run's immediate_exit byte: set (atomically, from any thread) to make KVM_RUN return EINTR
    /// instead of entering the guest. Valid as long as this vm.
    std::uint8_t* immediate_exit() const noexcept;

    /// The general registers (no ioctl); cr2, fs_base and gs_base are left 0.
    cpu_state regs() const noexcept;
    /// Stages the general registers of `r` for the next run (no ioctl); its other fields are ignored.
    void set_registers(const cpu_state& r) noexcept;

    /// The registers and the special registers a fault report needs (one ioctl: for the fault path
    /// only).
    cpu_state read_cpu_state() const;

    /// After a system call trapped (RIP == syscall_entry, or #UD at a `syscall`), puts the vCPU back
    /// at CPL3 with the general registers and FS base of `r` for the next run. No ioctl when
    /// read_cpu_state() read the special registers since the last run (the system-call path does).
    void return_from_syscall(const cpu_state& r);
    /// Puts the special registers, FPU/SSE state and CR2 back to their initial values, after a fault.
    void reset_cpu();

    /// The vCPU's state, for a snapshot (two ioctls).
    saved_cpu save_cpu() const;
    /// The x87 and SSE registers in FXSAVE's 512-byte format (one ioctl: for crash dumps only).
    std::array<std::byte, 512> read_fx_state() const;

    /// How restore_cpu() puts back the extended registers (x87, SSE with MXCSR, AVX, AVX-512).
    enum class fpu_restore {
        now,       ///< with KVM_SET_XSAVE (one ioctl)
        by_guest,  ///< not at all: the caller makes the guest load them first (x86_64::write_entry_stub)
    };
    /// Puts a saved state back: general and special registers go in with the next run (no ioctl),
    /// the extended registers as `fpu` says; after a run that ended other than at an `out`, also
    /// drops any event KVM was delivering (one or two more ioctls).
    void restore_cpu(const saved_cpu& state, fpu_restore fpu = fpu_restore::now);

    /// The XSAVE components the guest has (its XCR0, the same for every vm of the process): those
    /// KVM offers, the host has enabled, and kvm_xsave holds.
    static std::uint64_t xcr0();

    /// Fetches into `dirty` (one bit per page of the slot) the pages the guest wrote since tracking
    /// was last armed for them. Without selective re-arming, this also re-arms all of them.
    void fetch_dirty_pages(mem::page_bitmap& dirty);

    /// With KVM's manual dirty-log protection, the host re-arms tracking only for the pages it
    /// chooses (KVM_CLEAR_DIRTY_LOG); the others stay writable and keep being reported dirty.
    bool can_rearm_selectively() const noexcept { return manual_protect_; }
    /// Re-arms the pages set in words [first_word, last_word] of `pages` (the rest of it is ignored).
    void rearm_dirty_pages(const mem::page_bitmap& pages, std::uint64_t first_word, std::uint64_t last_word);

private:
    vm(util::unique_fd vm_fd, util::unique_fd vcpu_fd, util::mapping run, cpu_setup setup, std::uint64_t pages,
       bool manual_protect) noexcept;
    kvm_run* run_state() const noexcept;
    // The architecture's part: CPUID and the initial registers of a new vCPU,
    // and dropping an exception that finishing a half-done instruction raised.
    void setup_vcpu();
    void set_initial_cpu_state();
    void drop_pending_events();

    util::unique_fd vm_fd_;
    util::unique_fd vcpu_fd_;
    util::mapping run_;
    cpu_setup setup_;
    std::uint64_t pages_;
    bool manual_protect_;  // KVM_CLEAR_DIRTY_LOG re-arms only the pages fetched
    bool pending_ = false;  // see has_pending_completion()
    // The last KVM_RUN ended other than at an `out` (EINTR, a fault, an internal error ...): KVM may
    // have stopped while delivering an event (the page fault of a system call's trap at LSTAR, seen
    // here, or the triple fault it became), which stays in the vCPU. restore_cpu() drops it, or the
    // next call would take it at its first instruction.
    bool events_suspect_ = false;
    bool triple_fault_events_ = false;  // KVM_CAP_X86_TRIPLE_FAULT_EVENT is on: events show a pending one
    // The special registers (kvm_sregs) read_cpu_state() read since the last run or staging, if any.
    mutable std::byte last_sregs_[312]{};
    mutable bool last_sregs_valid_ = false;
};

}  // namespace hl::vmm
