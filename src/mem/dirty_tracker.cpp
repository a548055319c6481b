// SPDX-License-Identifier: Apache-2.0
#include "mem/dirty_tracker.hpp"

#include <algorithm>
#include <bit>

namespace hl::mem {
namespace {

// Restore copies pages one run at a time: runs of dirty pages normally. When more than this fraction
// of the pages either side may hold are dirty, it copies all of those instead: fewer, longer copies.
// Either way, no page outside them is touched.
constexpr std::uint64_t whole_copy_percent = 50;

// A hot page is not re-armed, so the guest writes it without a write-protect fault (about 4 us each
// under PVM) and restore copies it every time (well under 1 us). Every this many collections all
// pages are re-armed, so pages that cooled down stop being copied.
constexpr std::uint64_t hot_page_cooldown = 64;

}  // namespace

dirty_tracker::dirty_tracker(std::uint64_t pages)
    : populated_(pages), dirty_(pages), previous_dirty_(pages), rearm_(pages) {}

void dirty_tracker::adopt_host_writes(guest_memory& memory) {
    populated_count_ += populated_.merge(memory.host_written());
    memory.clear_host_written();
}

void dirty_tracker::start_from(std::shared_ptr<const void> base, const page_bitmap& populated, std::uint64_t count) {
    populated_ = populated;
    populated_count_ = count;
    base_ = std::move(base);
}

void dirty_tracker::prepare_snapshot(dirty_log& log, guest_memory& memory) {
    // Until the snapshot is taken memory matches none: a later restore then copies every page
    // rather than trusting dirty pages that this attempt has already consumed.
    base_.reset();
    collect(log, memory);
}

dirty_tracker::restore_plan dirty_tracker::plan_restore(dirty_log& log, guest_memory& memory, const void* target,
                                                        const page_bitmap& target_populated) {
    const bool incremental = equals(target);
    base_.reset();  // set again by now_equals() once the restore has succeeded
    collect(log, memory);
    std::uint64_t dirty_count = 0;
    for (const auto w : dirty_words_) dirty_count += static_cast<std::uint64_t>(std::popcount(dirty_.word(w)));
    if (!incremental || dirty_count * 100 > populated_count_ * whole_copy_percent) {
        populated_count_ += populated_.merge(target_populated);
        return {populated_, nullptr};
    }
    return {dirty_, &dirty_words_};
}

void dirty_tracker::collect(dirty_log& log, guest_memory& memory) {
    log.fetch(dirty_);
    dirty_words_.clear();
    dirty_.nonzero_words(dirty_words_);

    if (log.can_rearm_selectively()) {
        const bool cool_down = ++collections_ % hot_page_cooldown == 0;
        bool rearm_any = false;
        for (const auto w : dirty_words_) {
            const std::uint64_t hot = cool_down ? 0 : dirty_.word(w) & previous_dirty_.word(w);
            rearm_.word(w) = dirty_.word(w) & ~hot;
            rearm_any = rearm_any || rearm_.word(w) != 0;
        }
        if (rearm_any) log.rearm(rearm_, dirty_words_.front(), dirty_words_.back());
        for (const auto w : dirty_words_) rearm_.word(w) = 0;
        for (const auto w : previous_words_) previous_dirty_.word(w) = 0;
        for (const auto w : dirty_words_) previous_dirty_.word(w) = dirty_.word(w);
        previous_words_ = dirty_words_;
    }

    // The host's own writes, which the log does not see.
    const page_bitmap& host = memory.host_written();
    bool added_words = false;
    for (const auto w : memory.host_written_words()) {
        if (dirty_.word(w) == 0) {
            dirty_words_.push_back(w);
            added_words = true;
        }
        dirty_.word(w) |= host.word(w);
    }
    memory.clear_host_written();
    if (added_words) std::sort(dirty_words_.begin(), dirty_words_.end());

    for (const auto w : dirty_words_) {
        if (const std::uint64_t fresh = dirty_.word(w) & ~populated_.word(w)) {
            populated_count_ += static_cast<std::uint64_t>(std::popcount(fresh));
            populated_.word(w) |= fresh;
        }
    }
}

}  // namespace hl::mem
