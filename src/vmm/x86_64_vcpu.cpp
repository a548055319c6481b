// SPDX-License-Identifier: Apache-2.0
// The x86-64 half of the vCPU: CPUID, XCR0, long mode at CPL3 (segments, control registers, FPU), and
// the registers as KVM keeps them (sync regs, special registers, XSAVE, pending events).
#include <cpuid.h>
#include <sys/ioctl.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <system_error>
#include <vector>

#include "vmm/kvm_api.hpp"
#include "vmm/kvm_system.hpp"
#include "vmm/vm.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::vmm {
namespace {

using kvm::checked_ioctl;

// cpu_state starts with kvm_regs, field for field.
static_assert(offsetof(cpu_state, rflags) + sizeof(cpu_state::rflags) == sizeof(kvm_regs) &&
                  offsetof(cpu_state, rip) == offsetof(kvm_regs, rip) &&
                  offsetof(cpu_state, r15) == offsetof(kvm_regs, r15),
              "cpu_state begins with kvm_regs' fields");
static_assert(sizeof(saved_cpu::sregs) == sizeof(kvm_sregs) && sizeof(saved_cpu::xsave) == sizeof(kvm_xsave),
              "saved_cpu holds kvm_sregs and kvm_xsave");

constexpr std::uint64_t cr0_pe = 1u << 0, cr0_mp = 1u << 1, cr0_et = 1u << 4, cr0_ne = 1u << 5,
                        cr0_wp = 1u << 16, cr0_pg = 1u << 31;
constexpr std::uint64_t cr4_pae = 1u << 5, cr4_osfxsr = 1u << 9, cr4_osxmmexcpt = 1u << 10, cr4_osxsave = 1u << 18;
constexpr std::uint64_t efer_lme = 1u << 8, efer_lma = 1u << 10, efer_nxe = 1u << 11;

// kvm_cpuid2 + entries, as KVM_GET_SUPPORTED_CPUID returned them: read once per process.
const std::vector<std::byte>& supported_cpuid() {
    static const std::vector<std::byte> cpuid = [] {
        constexpr std::uint32_t max_entries = 256;
        std::vector<std::byte> bytes(sizeof(kvm_cpuid2) + max_entries * sizeof(kvm_cpuid_entry2));
        auto* c = reinterpret_cast<kvm_cpuid2*>(bytes.data());
        c->nent = max_entries;
        checked_ioctl(kvm::system::get().fd.get(), KVM_GET_SUPPORTED_CPUID, c, "KVM_GET_SUPPORTED_CPUID");
        return bytes;
    }();
    return cpuid;
}

const kvm_cpuid_entry2* supported_leaf(std::uint32_t function, std::uint32_t index) {
    const auto* c = reinterpret_cast<const kvm_cpuid2*>(supported_cpuid().data());
    for (std::uint32_t i = 0; i < c->nent; ++i) {
        if (c->entries[i].function == function && c->entries[i].index == index) return &c->entries[i];
    }
    return nullptr;
}

std::uint64_t host_xcr0() {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return 0x3;  // KVM_CAP_XSAVE rules this out
    std::uint32_t lo = 0, hi = 0;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0u));
    return lo | std::uint64_t(hi) << 32;
}

kvm_segment user_segment(std::uint16_t selector, bool code) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = selector;
    s.type = code ? 11 : 3;
    s.present = 1;
    s.dpl = 3;
    s.s = 1;
    s.l = code ? 1 : 0;
    s.db = code ? 0 : 1;
    s.g = 1;
    return s;
}

}  // namespace

std::uint64_t vm::xcr0() {
    // The host's own XCR0 where KVM allows it: a guest XCR0 that differs makes KVM switch XCR0 at
    // every entry and exit, which traps to the outer hypervisor on a nested host such as PVM's.
    static const std::uint64_t value = [] {
        const kvm_cpuid_entry2* top = supported_leaf(0xd, 0);
        std::uint64_t x = host_xcr0() & (top ? top->eax | std::uint64_t(top->edx) << 32 : 0x3);
        for (unsigned bit = 2; bit < 64; ++bit) {  // only what kvm_xsave holds (AMX's tiles do not fit)
            if (!(x >> bit & 1)) continue;
            const kvm_cpuid_entry2* part = supported_leaf(0xd, bit);
            if (part == nullptr || std::uint64_t(part->ebx) + part->eax > sizeof(kvm_xsave)) x &= ~(1ull << bit);
        }
        // What KVM_SET_XCRS insists on: AVX-512's three components go together and need AVX; AMX's
        // tile configuration and tile data go together (the data never fits, so neither stays);
        // x87 and SSE are always there.
        constexpr std::uint64_t avx = 0x4, avx512 = 0xe0, amx = 0x60000;
        if ((x & avx512) != avx512 || !(x & avx)) x &= ~avx512;
        if ((x & amx) != amx) x &= ~amx;
        return x | 0x3;
    }();
    return value;
}

void vm::setup_vcpu() {
    checked_ioctl(vcpu_fd_.get(), KVM_SET_CPUID2, supported_cpuid().data(), "KVM_SET_CPUID2");
    // XSAVE on for the guest (CR4.OSXSAVE, set below): then `xrstor` at CPL3 can load a restored
    // snapshot's extended registers, on hardware KVM as on PVM (which lets CPL3 code use AVX-512
    // without it). The guest sees AVX and AVX-512 enabled where the host has them.
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = xcr0();
    checked_ioctl(vcpu_fd_.get(), KVM_SET_XCRS, &xcrs, "KVM_SET_XCRS");
    // `syscall` at CPL3 enters CPL0 at LSTAR; an unmapped LSTAR makes that fetch fault, so the vCPU
    // stops with RIP == syscall_entry and the host can serve the call (see cpu_state.hpp).
    struct {
        kvm_msrs header;
        kvm_msr_entry entry;
    } msrs{};
    msrs.header.nmsrs = 1;
    msrs.entry.index = 0xc0000082;  // MSR_LSTAR
    msrs.entry.data = syscall_entry;
    if (::ioctl(vcpu_fd_.get(), KVM_SET_MSRS, &msrs) != 1) {
        throw std::system_error(errno, std::generic_category(), "KVM_SET_MSRS (LSTAR)");
    }
    set_initial_cpu_state();
    run_state()->kvm_valid_regs = KVM_SYNC_X86_REGS;
}

void vm::set_initial_cpu_state() {
    last_sregs_valid_ = false;
    kvm_sregs s{};
    checked_ioctl(vcpu_fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    s.cs = user_segment(x86_64::user_code_selector, true);
    s.ds = s.es = s.fs = s.gs = s.ss = user_segment(x86_64::user_data_selector, false);
    s.tr = kvm_segment{};
    s.tr.base = setup_.tss_base;
    s.tr.limit = setup_.tss_limit;
    s.tr.selector = x86_64::tss_selector;
    s.tr.type = 11;  // 64-bit TSS, busy
    s.tr.present = 1;
    s.ldt = kvm_segment{};
    s.ldt.unusable = 1;
    s.gdt.base = setup_.gdt_base;
    s.gdt.limit = setup_.gdt_limit;
    s.idt.base = 0;  // no IDT: every guest exception becomes a triple fault the host reports
    s.idt.limit = 0;
    s.cr0 = cr0_pe | cr0_mp | cr0_et | cr0_ne | cr0_wp | cr0_pg;
    s.cr2 = 0;
    s.cr3 = setup_.cr3;
    s.cr4 = cr4_pae | cr4_osfxsr | cr4_osxmmexcpt | cr4_osxsave;
    s.efer = efer_lme | efer_lma | efer_nxe;
    checked_ioctl(vcpu_fd_.get(), KVM_SET_SREGS, &s, "KVM_SET_SREGS");

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    checked_ioctl(vcpu_fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

void vm::reset_cpu() {
    // A triple fault leaves the vCPU in shutdown state; setting the state again makes it runnable
    // (probed: the same vCPU runs again after SET_SREGS + SET_REGS).
    set_initial_cpu_state();
}

cpu_state vm::regs() const noexcept {
    cpu_state r;
    std::memcpy(static_cast<void*>(&r), &run_state()->s.regs.regs, sizeof(kvm_regs));
    return r;
}

void vm::set_registers(const cpu_state& r) noexcept {
    kvm_run* run = run_state();
    std::memcpy(&run->s.regs.regs, &r, sizeof(kvm_regs));
    run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
}

saved_cpu vm::save_cpu() const {
    saved_cpu state;
    state.regs = regs();
    const kvm_run* run = run_state();
    if (run->kvm_dirty_regs & KVM_SYNC_X86_SREGS) {
        // A restore staged these for the next KVM_RUN; the vCPU does not hold them yet.
        std::memcpy(state.sregs, &run->s.regs.sregs, sizeof state.sregs);
    } else {
        checked_ioctl(vcpu_fd_.get(), KVM_GET_SREGS, state.sregs, "KVM_GET_SREGS");
    }
    checked_ioctl(vcpu_fd_.get(), KVM_GET_XSAVE, state.xsave, "KVM_GET_XSAVE");
    return state;
}

std::array<std::byte, 512> vm::read_fx_state() const {
    kvm_xsave xsave{};
    checked_ioctl(vcpu_fd_.get(), KVM_GET_XSAVE, &xsave, "KVM_GET_XSAVE");
    // The XSAVE area starts with the legacy region, which is FXSAVE's image.
    std::array<std::byte, 512> fx{};
    std::memcpy(fx.data(), xsave.region, fx.size());
    return fx;
}

void vm::restore_cpu(const saved_cpu& state, fpu_restore fpu) {
    last_sregs_valid_ = false;
    if (events_suspect_) {
        drop_pending_events();
        events_suspect_ = false;
    }
    if (fpu == fpu_restore::now) checked_ioctl(vcpu_fd_.get(), KVM_SET_XSAVE, state.xsave, "KVM_SET_XSAVE");
    kvm_run* run = run_state();
    std::memcpy(&run->s.regs.sregs, state.sregs, sizeof state.sregs);
    std::memcpy(&run->s.regs.regs, &state.regs, sizeof(kvm_regs));
    run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS | KVM_SYNC_X86_REGS;
}

static_assert(sizeof(kvm_sregs) == 312, "vm::last_sregs_ holds a kvm_sregs");

cpu_state vm::read_cpu_state() const {
    kvm_sregs s{};
    checked_ioctl(vcpu_fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    std::memcpy(last_sregs_, &s, sizeof s);
    last_sregs_valid_ = true;
    cpu_state state = regs();
    state.cr2 = s.cr2;
    state.fs_base = s.fs.base;
    state.gs_base = s.gs.base;
    return state;
}

void vm::return_from_syscall(const cpu_state& r) {
    kvm_sregs s{};
    if (last_sregs_valid_) {
        std::memcpy(&s, last_sregs_, sizeof s);
    } else {
        checked_ioctl(vcpu_fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    }
    last_sregs_valid_ = false;
    // The trap left the vCPU at CPL0 in shutdown: CPL3 segments again (FS and GS keep their bases,
    // which the program set), and nothing of the fault.
    const std::uint64_t fs_base = r.fs_base, gs_base = s.gs.base;
    s.cs = user_segment(x86_64::user_code_selector, true);
    s.ds = s.es = s.fs = s.gs = s.ss = user_segment(x86_64::user_data_selector, false);
    s.fs.base = fs_base;
    s.gs.base = gs_base;
    s.cr2 = 0;
    kvm_run* run = run_state();
    std::memcpy(&run->s.regs.sregs, &s, sizeof s);
    std::memcpy(&run->s.regs.regs, &r, sizeof(kvm_regs));
    run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS | KVM_SYNC_X86_REGS;
}

void vm::drop_pending_events() {
    // Finishing a half-done instruction may have raised an exception (an `ins` into read-only memory
    // queues a #PF), and a KVM_RUN ended by EINTR may have stopped in the middle of delivering one.
    // Staging new special registers does not drop it (a #PF stayed injected across a restore), so
    // drop it here rather than let it be delivered into whatever state runs next.
    kvm_vcpu_events events{};
    checked_ioctl(vcpu_fd_.get(), KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
    // A triple fault KVM had not turned into its exit yet ends the next run at once, wherever it starts.
    const bool triple_fault = triple_fault_events_ && (events.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT) &&
                              events.triple_fault.pending;
    if (events.exception.injected || events.exception.pending || events.interrupt.injected || events.nmi.injected ||
        events.nmi.pending || events.interrupt.shadow || triple_fault) {
        events.exception = {};
        events.interrupt.injected = 0;
        events.interrupt.shadow = 0;  // a `mov ss` or `sti` of the last call must not shield the next one
        events.nmi.injected = 0;
        events.nmi.pending = 0;
        events.triple_fault.pending = 0;
        events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW |
                       (triple_fault_events_ ? KVM_VCPUEVENT_VALID_TRIPLE_FAULT : 0);
        checked_ioctl(vcpu_fd_.get(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
    }
}

}  // namespace hl::vmm
