// SPDX-License-Identifier: Apache-2.0
// The guest's allocator, compiled for the host: alignment, reuse, coalescing, realloc, and what it
// does with a double free or a pointer it never handed out.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "hl_libc.h"

namespace {

int g_corruptions = 0;

}  // namespace

extern "C" void hl_heap_corrupted(void) { ++g_corruptions; }

namespace {

constexpr size_t kHeapSize = 16 << 20;
alignas(64) unsigned char g_heap[kHeapSize];

class GuestHeap : public ::testing::Test {
protected:
    void SetUp() override {
        hl_heap_init(g_heap, kHeapSize);
        g_corruptions = 0;
    }
};

TEST_F(GuestHeap, StrdupCopiesIntoTheGuestHeap) {
    char* copy = hl_strdup("guest");
    ASSERT_NE(copy, nullptr);
    EXPECT_STREQ(copy, "guest");
    EXPECT_GE(reinterpret_cast<unsigned char*>(copy), g_heap);
    EXPECT_LT(reinterpret_cast<unsigned char*>(copy), g_heap + kHeapSize);
    hl_free(copy);
    EXPECT_EQ(hl_heap_used(), 0u);
}

TEST_F(GuestHeap, ReusesMemoryAfterFree) {
    void* a = hl_malloc(100);
    ASSERT_NE(a, nullptr);
    EXPECT_GE(hl_heap_used(), 100u);
    hl_free(a);
    EXPECT_EQ(hl_heap_used(), 0u);
    EXPECT_EQ(hl_malloc(100), a);
}

TEST_F(GuestHeap, CoalescesNeighboursSoTheWholeHeapCanBeAllocatedAgain) {
    std::vector<void*> blocks;
    std::mt19937 random(3);
    while (void* p = hl_malloc(random() % 3000 + 1)) blocks.push_back(p);
    ASSERT_GT(blocks.size(), 1000u);
    std::shuffle(blocks.begin(), blocks.end(), random);
    for (void* p : blocks) hl_free(p);
    EXPECT_EQ(hl_heap_used(), 0u);
    void* all = hl_malloc(kHeapSize - 64);
    ASSERT_NE(all, nullptr);
    hl_free(all);
    EXPECT_EQ(g_corruptions, 0);
}

TEST_F(GuestHeap, AlignsMallocTo16AndAlignedAllocUpTo4096) {
    for (size_t n : {0, 1, 15, 16, 17, 100, 1000}) EXPECT_EQ(reinterpret_cast<uintptr_t>(hl_malloc(n)) % 16, 0u) << n;
    hl_heap_init(g_heap, kHeapSize);
    std::vector<void*> blocks;
    for (size_t alignment = 1; alignment <= 4096; alignment *= 2) {
        for (size_t n : {1, 24, 100, 5000}) {
            void* p = hl_aligned_alloc(alignment, n);
            ASSERT_NE(p, nullptr);
            EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << alignment;
            EXPECT_GE(hl_malloc_usable_size(p), n);
            std::memset(p, 0x5a, n);
            blocks.push_back(p);
            blocks.push_back(hl_malloc(40));
        }
    }
    for (void* p : blocks) hl_free(p);
    EXPECT_EQ(hl_heap_used(), 0u);
    EXPECT_EQ(g_corruptions, 0);
    EXPECT_EQ(hl_aligned_alloc(24, 10), nullptr);
}

TEST_F(GuestHeap, PosixMemalignAndMemalignFollowGlibcRules) {
    void* p = nullptr;
    EXPECT_EQ(hl_posix_memalign(&p, 4, 10), EINVAL);
    EXPECT_EQ(hl_posix_memalign(&p, 24, 10), EINVAL);
    EXPECT_EQ(hl_posix_memalign(&p, 0, 10), EINVAL);
    EXPECT_EQ(p, nullptr);
    ASSERT_EQ(hl_posix_memalign(&p, 256, 10), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
    EXPECT_EQ(hl_posix_memalign(&p, 256, kHeapSize), ENOMEM);
    void* q = hl_memalign(48, 10);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % 64, 0u);
    hl_free(p);
    hl_free(q);
    EXPECT_EQ(hl_heap_used(), 0u);
}

TEST_F(GuestHeap, ReallocGrowsInPlaceAndShrinksPreservingContent) {
    auto* p = static_cast<unsigned char*>(hl_malloc(64));
    for (int i = 0; i < 64; i++) p[i] = static_cast<unsigned char>(i);
    auto* grown = static_cast<unsigned char*>(hl_realloc(p, 4000));
    EXPECT_EQ(grown, p) << "the neighbour was free, so growth should happen in place";
    for (int i = 0; i < 64; i++) ASSERT_EQ(grown[i], i);
    size_t before = hl_heap_used();
    auto* shrunk = static_cast<unsigned char*>(hl_realloc(grown, 32));
    EXPECT_EQ(shrunk, p);
    EXPECT_LT(hl_heap_used(), before);
    for (int i = 0; i < 32; i++) ASSERT_EQ(shrunk[i], i);
    void* blocker = hl_malloc(16);
    auto* moved = static_cast<unsigned char*>(hl_realloc(shrunk, 10000));
    ASSERT_NE(moved, nullptr);
    EXPECT_NE(moved, shrunk);
    for (int i = 0; i < 32; i++) ASSERT_EQ(moved[i], i);
    EXPECT_EQ(hl_realloc(moved, kHeapSize), nullptr);
    EXPECT_EQ(moved[5], 5) << "a failed realloc keeps the block";
    EXPECT_EQ(hl_realloc(moved, 0), nullptr);
    hl_free(blocker);
    EXPECT_EQ(hl_heap_used(), 0u);
    void* fresh = hl_realloc(nullptr, 50);
    EXPECT_NE(fresh, nullptr);
}

TEST_F(GuestHeap, CallocZeroesMemoryAndRejectsOverflow) {
    void* dirty = hl_malloc(1000);
    std::memset(dirty, 0xff, 1000);
    hl_free(dirty);
    auto* p = static_cast<unsigned char*>(hl_calloc(10, 100));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(std::all_of(p, p + 1000, [](unsigned char c) { return c == 0; }));
    EXPECT_EQ(hl_calloc(SIZE_MAX / 2, 3), nullptr);
    EXPECT_EQ(hl_calloc(size_t{1} << 32, size_t{1} << 32), nullptr);
}

TEST_F(GuestHeap, ReturnsNullWhenOutOfMemory) {
    EXPECT_EQ(hl_malloc(kHeapSize), nullptr);
    EXPECT_EQ(hl_malloc(SIZE_MAX), nullptr);
    EXPECT_EQ(hl_malloc(SIZE_MAX - 8), nullptr);
    std::vector<void*> blocks;
    while (void* p = hl_malloc(100000)) blocks.push_back(p);
    EXPECT_EQ(blocks.size(), kHeapSize / 100016);
    for (void* p : blocks) hl_free(p);
    EXPECT_EQ(hl_heap_used(), 0u);
}

TEST_F(GuestHeap, ReportsDoubleFreeWithoutCorruptingTheHeap) {
    void *a = hl_malloc(100), *b = hl_malloc(100), *c = hl_malloc(100);
    hl_free(b);
    hl_free(b);
    EXPECT_EQ(g_corruptions, 1);
    hl_free(a);
    hl_free(a);
    EXPECT_EQ(g_corruptions, 2);
    EXPECT_EQ(hl_realloc(a, 200), nullptr);
    EXPECT_EQ(g_corruptions, 3);
    hl_free(c);
    EXPECT_EQ(hl_heap_used(), 0u);
    EXPECT_NE(hl_malloc(kHeapSize - 64), nullptr);
}

TEST_F(GuestHeap, ReportsFreeOfPointersItDidNotHandOut) {
    auto* p = static_cast<unsigned char*>(hl_malloc(100));
    int on_stack;
    hl_free(&on_stack);
    hl_free(p + 16);
    hl_free(p + 1);
    std::memset(p - 8, 0x41, 8);
    hl_free(p);
    EXPECT_EQ(g_corruptions, 4);
}

TEST_F(GuestHeap, SurvivesARandomizedStressOf100kOperations) {
    struct Live {
        unsigned char* p;
        size_t size;
        unsigned char seed;
    };
    auto fill = [](const Live& b) {
        for (size_t i = 0; i < b.size; i++) b.p[i] = static_cast<unsigned char>(b.seed + i * 7);
    };
    auto intact = [](const Live& b, size_t n) {
        for (size_t i = 0; i < n; i++)
            if (b.p[i] != static_cast<unsigned char>(b.seed + i * 7)) return false;
        return true;
    };
    std::mt19937 random(4);
    auto random_size = [&] {
        unsigned r = random() % 100;
        return r < 70 ? random() % 256 + 1 : r < 95 ? random() % 4096 + 1 : random() % 65536 + 1;
    };
    std::vector<Live> live;
    for (int op = 0; op < 100000; op++) {
        unsigned r = random() % 100;
        if (r < 45 || live.empty()) {
            size_t size = random_size();
            bool aligned = random() % 10 == 0;
            void* p = aligned ? hl_aligned_alloc(size_t{32} << (random() % 8), size) : hl_malloc(size);
            if (!p) continue;
            live.push_back({static_cast<unsigned char*>(p), size, static_cast<unsigned char>(random())});
            fill(live.back());
        } else if (r < 80) {
            size_t i = random() % live.size();
            ASSERT_TRUE(intact(live[i], live[i].size)) << "op " << op;
            hl_free(live[i].p);
            live[i] = live.back();
            live.pop_back();
        } else {
            Live& b = live[random() % live.size()];
            size_t size = random_size();
            void* p = hl_realloc(b.p, size);
            if (!p) continue;
            b.p = static_cast<unsigned char*>(p);
            ASSERT_TRUE(intact(b, std::min(size, b.size))) << "op " << op;
            b.size = size;
            fill(b);
        }
    }
    for (const Live& b : live) {
        ASSERT_TRUE(intact(b, b.size));
        hl_free(b.p);
    }
    EXPECT_EQ(hl_heap_used(), 0u);
    EXPECT_EQ(g_corruptions, 0);
    EXPECT_NE(hl_malloc(kHeapSize - 64), nullptr);
}

TEST_F(GuestHeap, KeepsTenThousandLiveBlocksCheap) {
    std::vector<void*> blocks;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 10000; i++) blocks.push_back(hl_malloc(static_cast<size_t>(i % 500 + 1)));
        for (size_t i = 0; i < blocks.size(); i += 2) hl_free(blocks[i]);
        for (size_t i = 0; i < blocks.size(); i += 2) blocks[i] = hl_malloc(static_cast<size_t>(i % 700 + 1));
        for (void* p : blocks) hl_free(p);
        blocks.clear();
    }
    EXPECT_EQ(hl_heap_used(), 0u);
}

}  // namespace
