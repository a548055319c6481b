// SPDX-License-Identifier: Apache-2.0
// Snapshots and restore. A restore copies back only the pages written since the sandbox last matched
// the snapshot: KVM's dirty log names the guest's writes, guest_memory names the host's. Restoring a
// different snapshot copies every page either side may hold.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "hl/metrics.hpp"
#include "sandbox/sandbox_core.hpp"
#include "sandbox/snapshot_state.hpp"
#include "util/strfmt.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl {

snapshot::snapshot(std::unique_ptr<state> s) noexcept : state_(std::move(s)) {}
snapshot::~snapshot() = default;
std::uint64_t snapshot::memory_size() const noexcept { return state_->view.size(); }
std::uint64_t snapshot::stored_bytes() const noexcept { return state_->populated_count * mem::page_size; }

}  // namespace hl

namespace hl::detail {
namespace {

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::system_category(), what); }

// Copies the populated pages of `source` into a new memfd, seals it against any change and maps it
// read-only.
void store_memory(snapshot::state& s, const mem::guest_memory& source) {
    const std::uint64_t size = source.size();
    s.fd.reset(::memfd_create("hl-snapshot", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!s.fd) throw_errno("memfd_create for a snapshot");
    if (::ftruncate(s.fd.get(), static_cast<off_t>(size)) != 0) throw_errno("ftruncate of a snapshot");
    {
        void* rw = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, s.fd.get(), 0);
        if (rw == MAP_FAILED) throw_errno("mmap of a new snapshot");
        util::mapping writable(rw, size);
        s.populated.for_each_run([&](std::uint64_t first, std::uint64_t count) {
            const auto from = source.span(mem::gpa{first * mem::page_size}, count * mem::page_size);
            std::memcpy(writable.data() + first * mem::page_size, from.data(), from.size());
        });
    }
    if (::fcntl(s.fd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        throw_errno("sealing a snapshot");
    }
    void* ro = ::mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_NORESERVE, s.fd.get(), 0);
    if (ro == MAP_FAILED) throw_errno("mmap of a snapshot");
    s.view = util::mapping(ro, size);
}

}  // namespace

// KVM's dirty log of the sandbox's one memory slot.
class sandbox_core::kvm_dirty_log final : public mem::dirty_log {
public:
    explicit kvm_dirty_log(vmm::vm& vm) noexcept : vm_(vm) {}
    void fetch(mem::page_bitmap& dirty) override { vm_.fetch_dirty_pages(dirty); }
    bool can_rearm_selectively() const noexcept override { return vm_.can_rearm_selectively(); }
    void rearm(const mem::page_bitmap& pages, std::uint64_t first_word, std::uint64_t last_word) override {
        vm_.rearm_dirty_pages(pages, first_word, last_word);
    }

private:
    vmm::vm& vm_;
};

std::shared_ptr<const snapshot> sandbox_core::take_snapshot() {
    check_not_in_callback("snapshot it");
    if (poisoned()) {
        throw error(errc::poisoned,
                    util::strfmt("cannot snapshot a poisoned sandbox (%s); restore it first", poison_reason_.c_str()));
    }
    settle_vcpu();  // a no-op: a sandbox with a half-done instruction is poisoned
    auto state = std::make_unique<snapshot::state>();
    state->cpu = vm_->save_cpu();
    // Right after a restore the vCPU still holds the registers of the task before it: the guest has
    // not loaded the restored ones yet.
    if (registers_pending_) {
        std::memcpy(state->cpu.xsave, registers_pending_->state_->cpu.xsave, sizeof state->cpu.xsave);
    }
    // In the snapshot's memory, for the entry stub after every restore of it.
    vmm::x86_64::write_register_image(memory_, layout_.register_image(), state->cpu.xsave, vmm::vm::xcr0());
    kvm_dirty_log log(*vm_);
    dirty_.prepare_snapshot(log, memory_);
    state->image = image_;
    state->populated = dirty_.populated();
    state->populated_count = dirty_.populated_count();
    store_memory(*state, memory_);
    auto snap = std::shared_ptr<const snapshot>(new snapshot(std::move(state)));
    dirty_.now_equals(snap);
    return snap;
}

void sandbox_core::restore(const std::shared_ptr<const snapshot>& snap) {
    if (!snap) throw error(errc::usage_error, "restore() needs a snapshot, not a null pointer");
    check_not_in_callback("restore it");
    const snapshot::state& s = *snap->state_;
    if (!image_->compatible_with(*s.image)) {
        throw error(errc::snapshot_mismatch,
                    "the snapshot was taken from a different guest or memory layout; the sandbox is unchanged");
    }

    if (vcpu_unusable_) {
        throw error(errc::vm_error, util::strfmt("cannot restore: this sandbox's vCPU could not be brought to a clean "
                                                 "state (%s); create a new sandbox",
                                                 poison_reason_.c_str()));
    }
    // Before anything is copied: finishing an instruction writes guest memory, and KVM's dirty log
    // must see that write for the copy below to undo it.
    const std::int64_t traced_from = tracing() ? monotonic_ns() : 0;
    settle_vcpu();
    // A restore that fails part way leaves memory neither the old nor the snapshot's: refuse calls
    // (which could read what is left of the last caller's data) until a restore succeeds.
    poison_reason_ = "restore failed";  // short enough not to allocate, so it cannot itself fail
    kvm_dirty_log log(*vm_);
    const auto plan = dirty_.plan_restore(log, memory_, snap.get(), s.populated);
    std::uint64_t pages = 0;
    plan.for_each_run([&](std::uint64_t first, std::uint64_t count) {
        pages += count;
        // Split the run where the snapshot switches between stored pages and zero pages.
        std::uint64_t start = first;
        const std::uint64_t end = first + count;
        while (start < end) {
            const bool stored = s.populated.test(start);
            std::uint64_t stop = start + 1;
            while (stop < end && s.populated.test(stop) == stored) ++stop;
            if (stored) {
                memory_.copy_pages_from(start, stop - start, s.view.data());
            } else {
                memory_.zero_pages(start, stop - start);
            }
            start = stop;
        }
    });
    // The extended registers come from the register image, which the copy above made the
    // snapshot's: the next call enters through the entry stub (begin()).
    vm_->restore_cpu(s.cpu, vmm::vm::fpu_restore::by_guest);
    registers_pending_ = snap;
    apply_log_level();  // the log level is the host's, not the snapshot's
    poison_reason_.clear();
    dirty_.now_equals(snap);
    if (image_->metrics) image_->metrics->record_restore(pages);
    if (traced_from != 0) {
        char detail[32];
        std::snprintf(detail, sizeof detail, "%llu pages", static_cast<unsigned long long>(pages));
        trace("restore", {}, detail, traced_from);
    }
}

std::unique_ptr<sandbox_core> sandbox_core::create_from(std::shared_ptr<const snapshot> snap) {
    if (!snap) throw error(errc::usage_error, "from_snapshot() needs a snapshot, not a null pointer");
    const snapshot::state& s = *snap->state_;
    auto core = std::unique_ptr<sandbox_core>(
        new sandbox_core(s.image, mem::guest_memory::map_private(s.fd.get(), s.view.size())));
    core->create_vm();
    core->vm_->restore_cpu(s.cpu);
    core->dirty_.start_from(snap, s.populated, s.populated_count);
    core->apply_log_level();
    return core;
}

}  // namespace hl::detail
