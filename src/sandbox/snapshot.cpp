// SPDX-License-Identifier: Apache-2.0
// Snapshots and restore. A restore copies back only the pages written since the sandbox last matched
// the snapshot: KVM's dirty log names the guest's writes, guest_memory names the host's. Restoring a
// different snapshot copies every page either side may hold.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "sandbox/sandbox_core.hpp"
#include "sandbox/snapshot_state.hpp"
#include "util/strfmt.hpp"

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

// Restore copies pages one run at a time: runs of dirty pages normally. When more than this fraction
// of the pages either side may hold are dirty, it copies all of those instead: fewer, longer copies.
// Either way, no page outside them is touched.
constexpr std::uint64_t whole_copy_percent = 50;

// A page the guest wrote in two collections in a row (the stack, the output buffer, allocator
// state) is "hot": its tracking is not re-armed, so the guest writes it without a write-protect
// fault (about 4 us each under PVM) and restore copies it every time (well under 1 us). Every this
// many collections all pages are re-armed, so pages that cooled down stop being copied.
constexpr std::uint64_t hot_page_cooldown = 64;

}  // namespace

void sandbox_core::collect_dirty_pages() {
    vm_->fetch_dirty_pages(dirty_);
    dirty_words_.clear();
    dirty_.nonzero_words(dirty_words_);

    if (vm_->can_rearm_selectively()) {
        const bool cool_down = ++collections_ % hot_page_cooldown == 0;
        bool rearm_any = false;
        for (const auto w : dirty_words_) {
            const std::uint64_t hot = cool_down ? 0 : dirty_.word(w) & previous_dirty_.word(w);
            rearm_.word(w) = dirty_.word(w) & ~hot;
            rearm_any = rearm_any || rearm_.word(w) != 0;
        }
        if (rearm_any) vm_->rearm_dirty_pages(rearm_, dirty_words_.front(), dirty_words_.back());
        for (const auto w : dirty_words_) rearm_.word(w) = 0;
        for (const auto w : previous_words_) previous_dirty_.word(w) = 0;
        for (const auto w : dirty_words_) previous_dirty_.word(w) = dirty_.word(w);
        previous_words_ = dirty_words_;
    }

    // The host's own writes, which KVM does not see.
    const mem::page_bitmap& host = memory_.host_written();
    bool added_words = false;
    for (const auto w : memory_.host_written_words()) {
        if (dirty_.word(w) == 0) {
            dirty_words_.push_back(static_cast<std::uint32_t>(w));
            added_words = true;
        }
        dirty_.word(w) |= host.word(w);
    }
    memory_.clear_host_written();
    if (added_words) std::sort(dirty_words_.begin(), dirty_words_.end());

    for (const auto w : dirty_words_) {
        if (const std::uint64_t fresh = dirty_.word(w) & ~populated_.word(w)) {
            populated_count_ += static_cast<std::uint64_t>(std::popcount(fresh));
            populated_.word(w) |= fresh;
        }
    }
}

std::shared_ptr<const snapshot> sandbox_core::take_snapshot() {
    check_not_in_callback("snapshot it");
    if (poisoned()) {
        throw error(errc::poisoned,
                    util::strfmt("cannot snapshot a poisoned sandbox (%s); restore it first", poison_reason_.c_str()));
    }
    // Until this succeeds the sandbox matches no snapshot: a later restore then copies every page
    // rather than trusting dirty pages that this attempt has already consumed.
    settle_vcpu();  // a no-op: a sandbox with a half-done instruction is poisoned
    base_.reset();
    collect_dirty_pages();
    auto state = std::make_unique<snapshot::state>();
    state->image = image_;
    state->populated = populated_;
    state->populated_count = populated_count_;
    store_memory(*state, memory_);
    state->cpu = vm_->save_cpu();
    base_ = std::shared_ptr<const snapshot>(new snapshot(std::move(state)));
    return base_;
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
    settle_vcpu();
    const bool incremental = base_ == snap;
    base_.reset();  // as in take_snapshot(): set again only once the restore has succeeded
    // A restore that fails part way leaves memory neither the old nor the snapshot's: refuse calls
    // (which could read what is left of the last caller's data) until a restore succeeds.
    poison_reason_ = "restore failed";  // short enough not to allocate, so it cannot itself fail
    collect_dirty_pages();
    // Normally the dirty pages; for another snapshot, or when most pages are dirty, every page
    // either side may hold.
    auto copy_back = [&](std::uint64_t first, std::uint64_t count) {
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
    };
    std::uint64_t dirty_count = 0;
    for (const auto w : dirty_words_) dirty_count += static_cast<std::uint64_t>(std::popcount(dirty_.word(w)));
    if (!incremental || dirty_count * 100 > populated_count_ * whole_copy_percent) {
        populated_count_ += populated_.merge(s.populated);
        populated_.for_each_run(copy_back);
    } else {
        dirty_.for_each_run_in_words(dirty_words_, copy_back);
    }
    vm_->restore_cpu(s.cpu);
    apply_log_level();  // the log level is the host's, not the snapshot's
    poison_reason_.clear();
    base_ = snap;
}

std::unique_ptr<sandbox_core> sandbox_core::create_from(std::shared_ptr<const snapshot> snap) {
    if (!snap) throw error(errc::usage_error, "from_snapshot() needs a snapshot, not a null pointer");
    const snapshot::state& s = *snap->state_;
    auto core = std::unique_ptr<sandbox_core>(
        new sandbox_core(s.image, mem::guest_memory::map_private(s.fd.get(), s.view.size())));
    core->populated_ = s.populated;
    core->populated_count_ = s.populated_count;
    core->create_vm();
    core->vm_->restore_cpu(s.cpu);
    core->base_ = std::move(snap);
    core->apply_log_level();
    return core;
}

}  // namespace hl::detail
