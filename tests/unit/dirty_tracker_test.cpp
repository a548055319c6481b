// SPDX-License-Identifier: Apache-2.0
#include "mem/dirty_tracker.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

namespace hl::mem {
namespace {

constexpr std::uint64_t pages = 256;  // four bitmap words

// KVM's dirty log as the tracker sees it. A write stays reported until its page is re-armed: by
// every fetch without selective re-arming, by rearm() with it (KVM's manual protection).
class fake_log final : public dirty_log {
public:
    explicit fake_log(bool selective) : selective_(selective), reported_(pages) {}

    void guest_writes(std::initializer_list<std::uint64_t> written) {
        for (const auto p : written) reported_.set(p);
    }
    void fail_next_fetch() { fail_ = true; }

    void fetch(page_bitmap& dirty) override {
        if (fail_) {
            fail_ = false;
            throw std::runtime_error("KVM_GET_DIRTY_LOG failed");
        }
        ++fetches;
        for (std::size_t w = 0; w < (pages + 63) / 64; ++w) dirty.word(w) = reported_.word(w);
        if (!selective_) reported_ = page_bitmap(pages);
    }
    bool can_rearm_selectively() const noexcept override { return selective_; }
    void rearm(const page_bitmap& armed, std::uint64_t first_word, std::uint64_t last_word) override {
        std::vector<std::uint64_t> list;
        for (std::uint64_t w = first_word; w <= last_word; ++w) {
            reported_.word(w) &= ~armed.word(w);
            for (std::uint64_t b = 0; b < 64; ++b) {
                if ((armed.word(w) >> b) & 1) list.push_back(w * 64 + b);
            }
        }
        rearmed.push_back(std::move(list));
    }

    int fetches = 0;
    std::vector<std::vector<std::uint64_t>> rearmed;  // the pages of each rearm() call

private:
    bool selective_;
    bool fail_ = false;
    page_bitmap reported_;
};

std::vector<std::uint64_t> pages_of(const dirty_tracker::restore_plan& plan) {
    std::vector<std::uint64_t> out;
    plan.for_each_run([&](std::uint64_t first, std::uint64_t count) {
        for (std::uint64_t p = first; p < first + count; ++p) out.push_back(p);
    });
    return out;
}

std::vector<std::uint64_t> pages_of(const page_bitmap& bits) {
    std::vector<std::uint64_t> out;
    bits.for_each_run([&](std::uint64_t first, std::uint64_t count) {
        for (std::uint64_t p = first; p < first + count; ++p) out.push_back(p);
    });
    return out;
}

page_bitmap bitmap_of(std::initializer_list<std::uint64_t> set) {
    page_bitmap b(pages);
    for (const auto p : set) b.set(p);
    return b;
}

void host_writes(guest_memory& memory, std::initializer_list<std::uint64_t> written) {
    for (const auto p : written) memory.write(gpa{p * page_size + 8}, std::uint64_t{1});
}

using pages_list = std::vector<std::uint64_t>;

class DirtyTracker : public ::testing::Test {
protected:
    guest_memory memory = guest_memory::create(pages * page_size);
    dirty_tracker tracker{pages};
    fake_log log{true};
    std::shared_ptr<const int> snapshot = std::make_shared<const int>(1);
    std::shared_ptr<const int> other = std::make_shared<const int>(2);

    // A sandbox whose memory equals `snapshot`, which holds pages 0 to 9.
    void start_at_snapshot() {
        const auto held = bitmap_of({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
        tracker.start_from(snapshot, held, 10);
    }
};

TEST_F(DirtyTracker, FreshMemoryIsPopulatedWhereTheHostWroteIt) {
    host_writes(memory, {1, 2, 70});
    tracker.adopt_host_writes(memory);
    EXPECT_EQ(pages_of(tracker.populated()), (pages_list{1, 2, 70}));
    EXPECT_EQ(tracker.populated_count(), 3u);
    EXPECT_FALSE(memory.host_written().any()) << "the record is consumed";
}

TEST_F(DirtyTracker, FirstRestoreCopiesEveryPageEitherSideMayHold) {
    host_writes(memory, {1, 2});
    tracker.adopt_host_writes(memory);
    log.guest_writes({7});
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), bitmap_of({1, 5}));
    EXPECT_TRUE(plan.whole());
    EXPECT_EQ(pages_of(plan), (pages_list{1, 2, 5, 7}));
    EXPECT_EQ(tracker.populated_count(), 4u);
}

TEST_F(DirtyTracker, RestoreOfTheSnapshotMemoryMatchesCopiesOnlyTheDirtyPages) {
    start_at_snapshot();
    log.guest_writes({3});
    host_writes(memory, {130});
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), bitmap_of({0, 1, 2}));
    EXPECT_FALSE(plan.whole());
    EXPECT_EQ(pages_of(plan), (pages_list{3, 130}));
    EXPECT_EQ(tracker.populated_count(), 11u) << "page 130 may hold data from now on";
    EXPECT_FALSE(memory.host_written().any());
}

TEST_F(DirtyTracker, RestoreOfAnotherSnapshotCopiesEveryPageEitherSideMayHold) {
    start_at_snapshot();
    log.guest_writes({3});
    const auto plan = tracker.plan_restore(log, memory, other.get(), bitmap_of({20, 21}));
    EXPECT_TRUE(plan.whole());
    EXPECT_EQ(pages_of(plan), (pages_list{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21}));
}

TEST_F(DirtyTracker, RestoreCopiesEveryPageWhenMoreThanHalfOfThemAreDirty) {
    start_at_snapshot();
    log.guest_writes({0, 1, 2, 3, 4, 5});  // 6 of 10
    EXPECT_TRUE(tracker.plan_restore(log, memory, snapshot.get(), tracker.populated()).whole());
}

TEST_F(DirtyTracker, RestoreCopiesOnlyTheDirtyPagesWhenExactlyHalfOfThemAreDirty) {
    start_at_snapshot();
    log.guest_writes({0, 1, 2, 3, 4});  // 5 of 10
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), tracker.populated());
    EXPECT_FALSE(plan.whole());
    EXPECT_EQ(pages_of(plan), (pages_list{0, 1, 2, 3, 4}));
}

TEST_F(DirtyTracker, RestoreAfterASuccessfulOneCopiesOnlyWhatWasWrittenSince) {
    start_at_snapshot();
    log.guest_writes({3});
    tracker.plan_restore(log, memory, snapshot.get(), tracker.populated());
    tracker.now_equals(snapshot);
    log.guest_writes({4});
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), tracker.populated());
    EXPECT_FALSE(plan.whole());
    EXPECT_EQ(pages_of(plan), (pages_list{4})) << "page 3 was re-armed after the first restore";
}

TEST_F(DirtyTracker, RestoreAfterAFailedOneCopiesEveryPage) {
    start_at_snapshot();
    log.guest_writes({3});
    EXPECT_FALSE(tracker.plan_restore(log, memory, snapshot.get(), tracker.populated()).whole());
    // The copy failed part way: now_equals() is never called.
    EXPECT_FALSE(tracker.equals(snapshot.get()));
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), tracker.populated());
    EXPECT_TRUE(plan.whole()) << "the dirty pages of the failed attempt were consumed; trust none";
    EXPECT_EQ(pages_of(plan).size(), 10u);
}

TEST_F(DirtyTracker, RestoreAfterAFailedCollectionCopiesEveryPage) {
    start_at_snapshot();
    log.fail_next_fetch();
    EXPECT_THROW(tracker.plan_restore(log, memory, snapshot.get(), tracker.populated()), std::runtime_error);
    EXPECT_TRUE(tracker.plan_restore(log, memory, snapshot.get(), tracker.populated()).whole());
}

TEST_F(DirtyTracker, ASnapshotIsMatchedOnlyOnceItIsTaken) {
    start_at_snapshot();
    log.guest_writes({12});
    tracker.prepare_snapshot(log, memory);
    EXPECT_FALSE(tracker.equals(snapshot.get())) << "memory changed since the old snapshot";
    EXPECT_EQ(tracker.populated_count(), 11u);
    // Taking it failed: a restore of the old snapshot cannot trust the consumed dirty pages.
    EXPECT_TRUE(tracker.plan_restore(log, memory, snapshot.get(), tracker.populated()).whole());

    tracker.prepare_snapshot(log, memory);
    tracker.now_equals(other);
    EXPECT_TRUE(tracker.equals(other.get()));
    log.guest_writes({12});
    const auto plan = tracker.plan_restore(log, memory, other.get(), tracker.populated());
    EXPECT_EQ(pages_of(plan), (pages_list{12}));
}

TEST_F(DirtyTracker, APageWrittenInTwoCollectionsInARowIsNotRearmed) {
    start_at_snapshot();
    log.guest_writes({3, 4});
    tracker.prepare_snapshot(log, memory);
    ASSERT_EQ(log.rearmed.size(), 1u);
    EXPECT_EQ(log.rearmed[0], (pages_list{3, 4}));

    log.guest_writes({3});
    tracker.prepare_snapshot(log, memory);
    EXPECT_EQ(log.rearmed.size(), 1u) << "page 3 is hot: nothing to re-arm";

    // Hot page 3 is still unarmed: reported, and so copied, at every restore without a new write.
    tracker.now_equals(snapshot);
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), tracker.populated());
    EXPECT_EQ(pages_of(plan), (pages_list{3}));
}

TEST_F(DirtyTracker, OnlyTheHotPagesOfACollectionStayUnarmed) {
    start_at_snapshot();
    log.guest_writes({3});
    tracker.prepare_snapshot(log, memory);  // re-armed: first time dirty
    log.guest_writes({3, 5});
    tracker.prepare_snapshot(log, memory);  // 3 is hot, 5 is re-armed
    ASSERT_EQ(log.rearmed.size(), 2u);
    EXPECT_EQ(log.rearmed[1], (pages_list{5}));
}

TEST_F(DirtyTracker, EverySixtyFourthCollectionRearmsHotPagesToo) {
    start_at_snapshot();
    int collections = 0;
    log.guest_writes({3});
    tracker.prepare_snapshot(log, memory);
    ++collections;
    log.guest_writes({3});
    // Page 3 stays hot, unarmed and reported, until the 64th collection re-arms it.
    while (collections < 63) {
        tracker.prepare_snapshot(log, memory);
        ++collections;
    }
    EXPECT_EQ(log.rearmed.size(), 1u);
    tracker.prepare_snapshot(log, memory);  // the 64th
    ASSERT_EQ(log.rearmed.size(), 2u);
    EXPECT_EQ(log.rearmed[1], (pages_list{3}));

    tracker.now_equals(snapshot);
    EXPECT_TRUE(pages_of(tracker.plan_restore(log, memory, snapshot.get(), tracker.populated())).empty())
        << "re-armed and not written again";
}

TEST_F(DirtyTracker, WithoutSelectiveRearmingEveryFetchRearmsAndNothingIsHot) {
    fake_log plain(false);
    start_at_snapshot();
    plain.guest_writes({3});
    tracker.prepare_snapshot(plain, memory);
    plain.guest_writes({3});
    tracker.prepare_snapshot(plain, memory);
    tracker.now_equals(snapshot);
    EXPECT_TRUE(plain.rearmed.empty());
    EXPECT_TRUE(pages_of(tracker.plan_restore(plain, memory, snapshot.get(), tracker.populated())).empty());
}

TEST_F(DirtyTracker, HostWritesInWordsTheLogLeftCleanAreCopiedInOrder) {
    start_at_snapshot();
    log.guest_writes({200});
    host_writes(memory, {130, 2});
    const auto plan = tracker.plan_restore(log, memory, snapshot.get(), tracker.populated());
    EXPECT_FALSE(plan.whole());
    EXPECT_EQ(pages_of(plan), (pages_list{2, 130, 200}));
}

}  // namespace
}  // namespace hl::mem
