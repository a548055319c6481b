// SPDX-License-Identifier: Apache-2.0
#include "hl/detail/recycled.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

// Counts the blocks of recycled_memory's size that the heap holds, to see what a thread's cache
// gives back when the thread ends.
// (The reaper frees with unsized delete, so the blocks are remembered by address.)
namespace {
std::atomic<long> live_blocks{0};
std::atomic<void*> tracked[1024];

void forget(void* p) noexcept {
    for (auto& slot : tracked) {
        void* expected = p;
        if (p != nullptr && slot.compare_exchange_strong(expected, nullptr)) {
            --live_blocks;
            return;
        }
    }
}
}  // namespace

void* operator new(std::size_t size) {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p == nullptr) throw std::bad_alloc();
    if (size == hl::detail::recycled_memory::max_size) {
        for (auto& slot : tracked) {
            void* expected = nullptr;
            if (slot.compare_exchange_strong(expected, p)) {
                ++live_blocks;
                break;
            }
        }
    }
    return p;
}
void operator delete(void* p) noexcept {
    forget(p);
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    forget(p);
    std::free(p);
}

namespace {

using hl::detail::recycled_memory;

TEST(RecycledMemory, ReusesABlockFreedOnTheSameThread) {
    void* a = recycled_memory::allocate(64);
    recycled_memory::deallocate(a, 64);
    void* b = recycled_memory::allocate(128);
    EXPECT_EQ(a, b);
    recycled_memory::deallocate(b, 128);
}

TEST(RecycledMemory, LargerRequestsGoToTheHeap) {
    void* p = recycled_memory::allocate(recycled_memory::max_size + 1);
    ASSERT_NE(p, nullptr);
    recycled_memory::deallocate(p, recycled_memory::max_size + 1);
}

// Blocks allocated here and freed by a thread that never allocates (a completion run elsewhere)
// sit in that thread's cache; when it ends they go back to the heap.
TEST(RecycledMemory, AThreadThatOnlyFreesGivesItsCachedBlocksBackWhenItEnds) {
    std::thread([] {
        std::vector<void*> blocks;
        for (int i = 0; i < 8; ++i) blocks.push_back(recycled_memory::allocate(100));
        const long before_free = live_blocks.load();
        std::thread([&] {
            for (void* b : blocks) recycled_memory::deallocate(b, 100);
        }).join();
        EXPECT_EQ(live_blocks.load(), before_free - 8);
    }).join();
}

}  // namespace
