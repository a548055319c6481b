// SPDX-License-Identifier: Apache-2.0
#include "vmm/vm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

#include "hl/error.hpp"
#include "util/strfmt.hpp"
#include "util/system_error.hpp"
#include "vmm/kvm_api.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::vmm {
namespace {

static_assert(sizeof(registers) == sizeof(kvm_regs), "registers mirrors kvm_regs field for field");
static_assert(sizeof(saved_cpu::sregs) == sizeof(kvm_sregs) && sizeof(saved_cpu::xsave) == sizeof(kvm_xsave),
              "saved_cpu holds kvm_sregs and kvm_xsave");

constexpr std::uint64_t cr0_pe = 1u << 0, cr0_mp = 1u << 1, cr0_et = 1u << 4, cr0_ne = 1u << 5,
                        cr0_wp = 1u << 16, cr0_pg = 1u << 31;
constexpr std::uint64_t cr4_pae = 1u << 5, cr4_osfxsr = 1u << 9, cr4_osxmmexcpt = 1u << 10;
constexpr std::uint64_t efer_lme = 1u << 8, efer_lma = 1u << 10, efer_nxe = 1u << 11;

[[noreturn]] void throw_errno(const char* what) {
    const int e = errno;  // before building the message, which may allocate
    throw util::system_error(e, what);
}

int checked_ioctl(int fd, unsigned long request, const void* arg, const char* what) {
    const int r = ::ioctl(fd, request, arg);
    if (r < 0) throw_errno(what);
    return r;
}

// /dev/kvm, opened once per process, with what every VM needs from it.
struct hypervisor {
    util::unique_fd fd;
    std::size_t run_size = 0;
    std::vector<std::byte> cpuid;  // kvm_cpuid2 + entries, as KVM_GET_SUPPORTED_CPUID returned them

    static const hypervisor& get() {
        static const hypervisor instance = open();
        return instance;
    }

private:
    static hypervisor open() {
        hypervisor h;
        h.fd.reset(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
        if (!h.fd) {
            const int e = errno;
            if (e == ENOENT) {
                throw error(errc::kvm_unavailable,
                            "/dev/kvm does not exist: load the kvm module (kvm_intel or kvm_amd) or run on a "
                            "machine with hardware virtualization enabled");
            }
            if (e == EACCES || e == EPERM) {
                throw error(errc::kvm_unavailable,
                            "/dev/kvm is not accessible to this user: add the user to the 'kvm' group "
                            "(usermod -aG kvm $USER, then log in again) or grant read/write access");
            }
            throw error(errc::kvm_unavailable, util::strfmt("cannot open /dev/kvm: %s", std::strerror(e)));
        }
        if (::ioctl(h.fd.get(), KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
            throw error(errc::kvm_unavailable, "/dev/kvm speaks an unsupported KVM API version");
        }
        for (auto [cap, name] : {std::pair{KVM_CAP_SYNC_REGS, "KVM_CAP_SYNC_REGS"},
                                 std::pair{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
                                 std::pair{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
                                 std::pair{KVM_CAP_XSAVE, "KVM_CAP_XSAVE"}}) {
            if (::ioctl(h.fd.get(), KVM_CHECK_EXTENSION, cap) <= 0) {
                throw error(errc::kvm_unavailable, util::strfmt("this kernel's KVM lacks %s (Linux 4.16 or later is needed)", name));
            }
        }
        const int run_size = ::ioctl(h.fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
        if (run_size <= 0) throw_errno("KVM_GET_VCPU_MMAP_SIZE");
        h.run_size = static_cast<std::size_t>(run_size);

        constexpr std::uint32_t max_entries = 256;
        h.cpuid.resize(sizeof(kvm_cpuid2) + max_entries * sizeof(kvm_cpuid_entry2));
        auto* cpuid = reinterpret_cast<kvm_cpuid2*>(h.cpuid.data());
        cpuid->nent = max_entries;
        checked_ioctl(h.fd.get(), KVM_GET_SUPPORTED_CPUID, cpuid, "KVM_GET_SUPPORTED_CPUID");
        return h;
    }
};

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

vm::vm(util::unique_fd vm_fd, util::unique_fd vcpu_fd, util::mapping run, cpu_setup setup, std::uint64_t pages,
       bool manual_protect) noexcept
    : vm_fd_(std::move(vm_fd)),
      vcpu_fd_(std::move(vcpu_fd)),
      run_(std::move(run)),
      setup_(setup),
      pages_(pages),
      manual_protect_(manual_protect) {}

vm::~vm() = default;

vm vm::create(const mem::guest_memory& memory, const cpu_setup& setup) {
    const hypervisor& hv = hypervisor::get();

    util::unique_fd vm_fd(::ioctl(hv.fd.get(), KVM_CREATE_VM, 0));
    if (!vm_fd) throw_errno("KVM_CREATE_VM");

    // With manual protection, fetching the dirty log does not re-protect every page at once; the
    // host re-arms exactly the pages it fetched with KVM_CLEAR_DIRTY_LOG.
    bool manual_protect = false;
    if (::ioctl(hv.fd.get(), KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0) {
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
        cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
        manual_protect = ::ioctl(vm_fd.get(), KVM_ENABLE_CAP, &cap) == 0;
    }

    kvm_userspace_memory_region slot{};
    slot.slot = 0;
    slot.flags = KVM_MEM_LOG_DIRTY_PAGES;
    slot.guest_phys_addr = 0;
    slot.memory_size = memory.size();
    slot.userspace_addr = reinterpret_cast<std::uint64_t>(memory.host_base());
    checked_ioctl(vm_fd.get(), KVM_SET_USER_MEMORY_REGION, &slot, "KVM_SET_USER_MEMORY_REGION");

    util::unique_fd vcpu_fd(::ioctl(vm_fd.get(), KVM_CREATE_VCPU, 0));
    if (!vcpu_fd) throw_errno("KVM_CREATE_VCPU");
    void* run = ::mmap(nullptr, hv.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd.get(), 0);
    if (run == MAP_FAILED) throw_errno("mmap of the vCPU's kvm_run");

    vm v(std::move(vm_fd), std::move(vcpu_fd), util::mapping(run, hv.run_size), setup, memory.pages(), manual_protect);
    checked_ioctl(v.vcpu_fd_.get(), KVM_SET_CPUID2, hv.cpuid.data(), "KVM_SET_CPUID2");
    v.set_initial_cpu_state();
    v.run_state()->kvm_valid_regs = KVM_SYNC_X86_REGS;
    return v;
}

kvm_run* vm::run_state() const noexcept { return reinterpret_cast<kvm_run*>(run_.data()); }

void vm::set_initial_cpu_state() {
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
    s.cr4 = cr4_pae | cr4_osfxsr | cr4_osxmmexcpt;
    s.efer = efer_lme | efer_lma | efer_nxe;
    checked_ioctl(vcpu_fd_.get(), KVM_SET_SREGS, &s, "KVM_SET_SREGS");

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    checked_ioctl(vcpu_fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU");
}

void vm::reset_cpu() {
    // A triple fault leaves the vCPU in shutdown state; setting the state again makes it runnable
    // (PLATFORM.md, probes/kvm/reuse.c).
    set_initial_cpu_state();
}

std::uint8_t* vm::immediate_exit() const noexcept { return &run_state()->immediate_exit; }

registers vm::regs() const noexcept {
    registers r;
    std::memcpy(static_cast<void*>(&r), &run_state()->s.regs.regs, sizeof r);
    return r;
}

void vm::set_registers(const registers& r) noexcept {
    kvm_run* run = run_state();
    std::memcpy(&run->s.regs.regs, &r, sizeof r);
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

void vm::restore_cpu(const saved_cpu& state) {
    checked_ioctl(vcpu_fd_.get(), KVM_SET_XSAVE, state.xsave, "KVM_SET_XSAVE");
    kvm_run* run = run_state();
    std::memcpy(&run->s.regs.sregs, state.sregs, sizeof state.sregs);
    std::memcpy(&run->s.regs.regs, &state.regs, sizeof state.regs);
    run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS | KVM_SYNC_X86_REGS;
}

void vm::fetch_dirty_pages(mem::page_bitmap& dirty) {
    kvm_dirty_log log{};
    log.slot = 0;
    log.dirty_bitmap = dirty.data();
    checked_ioctl(vm_fd_.get(), KVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG");
}

void vm::rearm_dirty_pages(const mem::page_bitmap& pages, std::uint64_t first_word, std::uint64_t last_word) {
    // KVM wants the range 64-page aligned, ending on a multiple of 64 or at the end of the slot.
    const std::uint64_t first_page = first_word * 64;
    const std::uint64_t end_page = std::min<std::uint64_t>((last_word + 1) * 64, pages_);
    kvm_clear_dirty_log clear{};
    clear.slot = 0;
    clear.first_page = first_page;
    clear.num_pages = static_cast<std::uint32_t>(end_page - first_page);
    clear.dirty_bitmap = const_cast<std::uint64_t*>(pages.data() + first_word);  // KVM only reads it
    checked_ioctl(vm_fd_.get(), KVM_CLEAR_DIRTY_LOG, &clear, "KVM_CLEAR_DIRTY_LOG");
}

vm::fault_registers vm::read_fault_registers() const {
    kvm_sregs s{};
    checked_ioctl(vcpu_fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    return {s.cr2, s.fs.base, s.gs.base};
}

namespace {

// What an exit asks the host to supply before KVM can finish the instruction: the data of an `in`
// or of an MMIO read. The guest never gets host data: zero it.
void zero_exit_data(kvm_run* run, std::size_t run_size) {
    if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN) {
        const std::size_t offset = run->io.data_offset;
        const std::size_t bytes = std::size_t{run->io.size} * run->io.count;
        if (offset < run_size) std::memset(reinterpret_cast<std::byte*>(run) + offset, 0, std::min(bytes, run_size - offset));
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
        std::memset(run->mmio.data, 0, sizeof run->mmio.data);
    }
}

bool leaves_completion_pending(const kvm_run* run) {
    // An `out` (string or not) is complete when KVM exits: the emulator writes its results back
    // first, and KVM's fast path only skips the instruction if RIP still points at it.
    return (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN) ||
           run->exit_reason == KVM_EXIT_MMIO;
}

}  // namespace

void vm::complete_pending() {
    if (!pending_) return;
    kvm_run* run = run_state();
    const std::size_t run_size = run_.size();
    // Each round hands KVM zeroed data and lets it finish; an MMIO access split across pages asks
    // again for its next fragment. A string `in` goes back to the guest after each batch, which
    // immediate_exit prevents, so it settles in one round.
    constexpr int max_rounds = 8;
    for (int round = 0; round < max_rounds; ++round) {
        zero_exit_data(run, run_size);
        __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        const int r = ::ioctl(vcpu_fd_.get(), KVM_RUN, 0);
        const int e = errno;
        __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (r < 0 && (e == EINTR || e == EAGAIN)) {
            pending_ = false;
            break;
        }
        if (r < 0) {
            throw error(errc::vm_error, util::strfmt("KVM_RUN could not finish the guest's half-done instruction: %s",
                                                     std::strerror(e)));
        }
        if (!leaves_completion_pending(run)) {
            throw error(errc::vm_error,
                        util::strfmt("finishing the guest's half-done instruction ended in KVM exit %u", run->exit_reason));
        }
    }
    if (pending_) {
        throw error(errc::vm_error, util::strfmt("the guest's half-done instruction did not finish in %d rounds", max_rounds));
    }
    // Finishing it may have raised an exception (an `ins` into read-only memory queues a #PF). On
    // this machine's KVM, staging new special registers happens to drop it too; KVM documents no
    // such thing, so drop it here rather than let it be delivered into whatever state runs next.
    kvm_vcpu_events events{};
    checked_ioctl(vcpu_fd_.get(), KVM_GET_VCPU_EVENTS, &events, "KVM_GET_VCPU_EVENTS");
    if (events.exception.injected || events.exception.pending || events.interrupt.injected || events.nmi.injected ||
        events.nmi.pending) {
        events.exception = {};
        events.interrupt.injected = 0;
        events.nmi.injected = 0;
        events.nmi.pending = 0;
        events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
        checked_ioctl(vcpu_fd_.get(), KVM_SET_VCPU_EVENTS, &events, "KVM_SET_VCPU_EVENTS");
    }
}

vm_exit vm::run() {
    kvm_run* run = run_state();
    if (pending_) {
        throw error(errc::vm_error, "the vCPU still holds a half-done instruction; complete_pending() must run first");
    }
    if (::ioctl(vcpu_fd_.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) return {.what = vm_exit::kind::interrupted};
        throw_errno("KVM_RUN");
    }
    pending_ = leaves_completion_pending(run);
    vm_exit e;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        e.port = run->io.port;
        std::uint32_t value = 0;
        const auto* data = reinterpret_cast<const std::byte*>(run) + run->io.data_offset;
        std::memcpy(&value, data, run->io.size <= 4 ? run->io.size : 4);
        e.value = value;
        e.what = run->io.direction == KVM_EXIT_IO_OUT ? vm_exit::kind::io_out : vm_exit::kind::io_in;
        break;
    }
    case KVM_EXIT_MMIO:
        e.what = vm_exit::kind::mmio;
        e.address = run->mmio.phys_addr;
        break;
    case KVM_EXIT_SHUTDOWN: e.what = vm_exit::kind::shutdown; break;
    case KVM_EXIT_INTR: e.what = vm_exit::kind::interrupted; break;
    case KVM_EXIT_INTERNAL_ERROR:
        e.what = vm_exit::kind::internal_error;
        e.detail = run->internal.suberror;
        break;
    default:
        e.what = vm_exit::kind::other;
        e.detail = run->exit_reason;
        break;
    }
    return e;
}

}  // namespace hl::vmm
