// SPDX-License-Identifier: Apache-2.0
// The VM, its memory slot, its vCPU and the run loop: the KVM ioctls that are the same on every
// architecture. The x86-64 vCPU setup and register access are in x86_64_vcpu.cpp.
#include "vmm/vm.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "hl/error.hpp"
#include "util/strfmt.hpp"
#include "util/system_error.hpp"
#include "vmm/kvm_api.hpp"
#include "vmm/kvm_system.hpp"

namespace hl::vmm {
namespace kvm {

void throw_errno(const char* what) {
    const int e = errno;  // before building the message, which may allocate
    throw util::system_error(e, what);
}

int ioctl_restarting(int fd, unsigned long request, const void* arg) {
    // A signal that lands in one (a call's slice timer, which on a runtime worker may still be
    // armed from an earlier call) may fail it with EINTR. They are idempotent until they succeed.
    int r = -1;
    for (int tries = 0; tries < 64; ++tries) {
        r = ::ioctl(fd, request, arg);
        if (r >= 0 || errno != EINTR) break;
    }
    return r;
}

int checked_ioctl(int fd, unsigned long request, const void* arg, const char* what) {
    const int r = ioctl_restarting(fd, request, arg);
    if (r < 0) throw_errno(what);
    return r;
}

namespace {

system open_system() {
    system h;
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
                             std::pair{KVM_CAP_XSAVE, "KVM_CAP_XSAVE"},
                             std::pair{KVM_CAP_XCRS, "KVM_CAP_XCRS"}}) {
        if (::ioctl(h.fd.get(), KVM_CHECK_EXTENSION, cap) <= 0) {
            throw error(errc::kvm_unavailable,
                        util::strfmt("this kernel's KVM lacks %s (Linux 4.16 or later is needed)", name));
        }
    }
    const int run_size = ::ioctl(h.fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) throw_errno("KVM_GET_VCPU_MMAP_SIZE");
    h.run_size = static_cast<std::size_t>(run_size);
    return h;
}

}  // namespace

const system& system::get() {
    static const system instance = open_system();
    return instance;
}

}  // namespace kvm

using kvm::checked_ioctl;
using kvm::throw_errno;

vm::vm(util::unique_fd vm_fd, util::unique_fd vcpu_fd, util::mapping run, cpu_setup setup, std::uint64_t pages,
       bool manual_protect) noexcept
    : vm_fd_(std::move(vm_fd)),
      vcpu_fd_(std::move(vcpu_fd)),
      run_(std::move(run)),
      setup_(setup),
      pages_(pages),
      manual_protect_(manual_protect) {}

vm::~vm() = default;

namespace {

// Holds the thread's signals back while it lives. KVM_CREATE_VM takes the process's memory locks
// killably: a signal that lands meanwhile fails it with EINTR, however often it is tried again,
// if signals keep coming (a runtime worker's slice timer may go off after its call, in the next
// sandbox's creation). Blocked signals are delivered when the mask is put back.
class signals_held {
public:
    signals_held() {
        sigset_t all;
        sigfillset(&all);
        held_ = ::pthread_sigmask(SIG_BLOCK, &all, &old_) == 0;
    }
    ~signals_held() {
        if (held_) ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    signals_held(const signals_held&) = delete;
    signals_held& operator=(const signals_held&) = delete;

private:
    sigset_t old_{};
    bool held_ = false;
};

}  // namespace

vm vm::create(const mem::guest_memory& memory, const cpu_setup& setup) {
    const kvm::system& hv = kvm::system::get();
    const signals_held quiet;

    util::unique_fd vm_fd(kvm::ioctl_restarting(hv.fd.get(), KVM_CREATE_VM, nullptr));
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

    // A kick can stop KVM_RUN between a triple fault and the exit it makes (a Linux guest's system-call
    // trap is one): the fault stays pending and would end the next run at once. Only with this
    // capability can the host see and drop it (vm::drop_pending_events).
    bool triple_fault_events = false;
    if (::ioctl(hv.fd.get(), KVM_CHECK_EXTENSION, KVM_CAP_X86_TRIPLE_FAULT_EVENT) > 0) {
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_X86_TRIPLE_FAULT_EVENT;
        cap.args[0] = 1;
        triple_fault_events = ::ioctl(vm_fd.get(), KVM_ENABLE_CAP, &cap) == 0;
    }

    kvm_userspace_memory_region slot{};
    slot.slot = 0;
    slot.flags = KVM_MEM_LOG_DIRTY_PAGES;
    slot.guest_phys_addr = 0;
    slot.memory_size = memory.size();
    slot.userspace_addr = reinterpret_cast<std::uint64_t>(memory.host_base());
    checked_ioctl(vm_fd.get(), KVM_SET_USER_MEMORY_REGION, &slot, "KVM_SET_USER_MEMORY_REGION");

    util::unique_fd vcpu_fd(kvm::ioctl_restarting(vm_fd.get(), KVM_CREATE_VCPU, nullptr));
    if (!vcpu_fd) throw_errno("KVM_CREATE_VCPU");
    void* run = ::mmap(nullptr, hv.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd.get(), 0);
    if (run == MAP_FAILED) throw_errno("mmap of the vCPU's kvm_run");

    vm v(std::move(vm_fd), std::move(vcpu_fd), util::mapping(run, hv.run_size), setup, memory.pages(), manual_protect);
    v.triple_fault_events_ = triple_fault_events;
    v.setup_vcpu();
    return v;
}

kvm_run* vm::run_state() const noexcept { return reinterpret_cast<kvm_run*>(run_.data()); }

std::uint8_t* vm::immediate_exit() const noexcept { return &run_state()->immediate_exit; }

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
    last_sregs_valid_ = false;
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
    drop_pending_events();
}

vm_exit vm::run() {
    kvm_run* run = run_state();
    last_sregs_valid_ = false;  // the guest may change them
    if (pending_) {
        throw error(errc::vm_error, "the vCPU still holds a half-done instruction; complete_pending() must run first");
    }
    if (::ioctl(vcpu_fd_.get(), KVM_RUN, 0) < 0) {
        const int e = errno;
        if (e == EINTR || e == EAGAIN) {
            events_suspect_ = true;
            return {.what = vm_exit::kind::interrupted};
        }
        if (e == EFAULT) {
            // Every page of guest memory has a host mapping, so the kernel failed to back the one
            // the guest touched: a memory cgroup at its limit with its OOM killer off refuses a
            // page this way (a hardware-poisoned page would too).
            throw std::system_error(e, std::system_category(),
                                    "KVM_RUN (the kernel could not back a page of guest memory: most likely out of "
                                    "memory, a cgroup memory limit with its OOM killer off; use smaller sandbox_config "
                                    "sizes or fewer sandboxes)");
        }
        throw util::system_error(e, "KVM_RUN");
    }
    // Only an `out` (a call, result, host call or print) stops the guest between two instructions
    // with nothing in delivery; after any other exit, the next restore looks.
    events_suspect_ = !(run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT);
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
