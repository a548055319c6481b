// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "mem/guest_memory.hpp"
#include "mem/page_bitmap.hpp"

namespace hl::mem {

/// Where the guest's own writes are read from: KVM's dirty log in a sandbox, a fake in the tests.
class dirty_log {
public:
    /// Fetches into `dirty` (one bit per page, every word written) the pages written since tracking
    /// was last armed for them. Without selective re-arming, this also re-arms all of them.
    virtual void fetch(page_bitmap& dirty) = 0;
    /// True when rearm() re-arms exactly the pages it is given; the others stay unarmed and are
    /// reported by every fetch.
    virtual bool can_rearm_selectively() const noexcept = 0;
    /// Re-arms the pages set in words [first_word, last_word] of `pages` (the rest of it is ignored).
    virtual void rearm(const page_bitmap& pages, std::uint64_t first_word, std::uint64_t last_word) = 0;

protected:
    ~dirty_log() = default;
};

/// Which pages of a sandbox's memory may differ from the snapshot it last matched, and which may
/// hold anything but zeros at all; and from that, which pages a restore copies back. The guest's
/// writes come from a dirty_log, the host's from guest_memory's host-written record.
///
/// A page the guest wrote in two collections in a row is "hot": it is not re-armed, so the guest
/// writes it without a write-protect fault and every restore copies it; every 64th collection
/// re-arms all pages, so that pages that cooled down stop being copied.
///
/// Not thread-safe: used by the thread driving its sandbox.
class dirty_tracker {
public:
    /// Tracks a memory of `pages` pages, all zero, matching no snapshot.
    explicit dirty_tracker(std::uint64_t pages);

    /// Pages that may hold non-zero data (every other page is zero), and how many.
    const page_bitmap& populated() const noexcept { return populated_; }
    std::uint64_t populated_count() const noexcept { return populated_count_; }

    /// Fresh memory the host has just filled: every page it wrote is populated. Consumes the
    /// memory's host-written record.
    void adopt_host_writes(guest_memory& memory);

    /// Memory that equals `base`, whose pages that may be non-zero are `populated`.
    void start_from(std::shared_ptr<const void> base, const page_bitmap& populated, std::uint64_t count);

    /// Before a snapshot is taken: gathers the pages written since the last collection (they are
    /// populated from now on) and forgets the snapshot memory matched, until now_equals() is called.
    void prepare_snapshot(dirty_log& log, guest_memory& memory);

    /// The pages a restore copies back. A view into the tracker, valid until its next collection.
    class restore_plan {
    public:
        /// True when the plan is every page either side may hold, false when only the dirty pages.
        bool whole() const noexcept { return words_ == nullptr; }
        /// Calls f(first_page, page_count) for every run of pages to copy back, in order.
        template <class F>
        void for_each_run(F&& f) const {
            if (words_ == nullptr) {
                pages_->for_each_run(std::forward<F>(f));
            } else {
                pages_->for_each_run_in_words(*words_, std::forward<F>(f));
            }
        }

    private:
        friend class dirty_tracker;
        restore_plan(const page_bitmap& pages, const std::vector<std::uint32_t>* words) noexcept
            : pages_(&pages), words_(words) {}
        const page_bitmap* pages_;
        const std::vector<std::uint32_t>* words_;  // null: every set page
    };

    /// Before a restore of `target`, whose pages that may be non-zero are `target_populated`:
    /// gathers the pages written since the last collection and forgets the snapshot memory matched
    /// (a restore that fails part way leaves memory that the next restore copies whole). The plan is
    /// the dirty pages when memory matched `target` and at most half of the populated pages are
    /// dirty; otherwise every page either side may hold, which all count as populated from now on.
    restore_plan plan_restore(dirty_log& log, guest_memory& memory, const void* target,
                              const page_bitmap& target_populated);

    /// Memory equals `snapshot` now (it was just taken or restored).
    void now_equals(std::shared_ptr<const void> snapshot) noexcept { base_ = std::move(snapshot); }

    /// True when memory equals `snapshot` except for the pages written since the last collection.
    bool equals(const void* snapshot) const noexcept { return base_ != nullptr && base_.get() == snapshot; }

private:
    void collect(dirty_log& log, guest_memory& memory);

    std::shared_ptr<const void> base_;  // memory equals it, except for the pages written since
    page_bitmap populated_;
    std::uint64_t populated_count_ = 0;
    // Filled by collect(): the pages written since the last collection, and the indices of its
    // non-zero words (ascending). Everything after the fetch touches only those words.
    page_bitmap dirty_;
    std::vector<std::uint32_t> dirty_words_;
    page_bitmap previous_dirty_;  // the guest's dirty pages at the collection before
    std::vector<std::uint32_t> previous_words_;
    page_bitmap rearm_;  // scratch, all zero between collections
    std::uint64_t collections_ = 0;
};

}  // namespace hl::mem
