// SPDX-License-Identifier: Apache-2.0
#include "hl/detail/recycled.hpp"

#include <new>

namespace hl::detail {
namespace {

constexpr int capacity = 16;

// Trivially destructible, so it stays usable while other thread-locals are destroyed; the reaper
// frees its blocks when the thread ends and closes it (count -1: blocks go straight to the heap).
struct block_list {
    void* blocks[capacity];
    int count;
};
thread_local block_list list{};

struct reaper {
    ~reaper() {
        while (list.count > 0) ::operator delete(list.blocks[--list.count]);
        list.count = -1;
    }
};
thread_local reaper reap;

}  // namespace

void* recycled_memory::allocate(std::size_t size) {
    if (size > max_size) return ::operator new(size);
    if (list.count > 0) return list.blocks[--list.count];
    if (list.count == 0) (void)&reap;  // the thread's cache is in use: free it when the thread ends
    return ::operator new(max_size);
}

void recycled_memory::deallocate(void* p, std::size_t size) noexcept {
    if (size <= max_size && list.count >= 0 && list.count < capacity) {
        // A thread may free blocks it never allocated (a completion on another thread): its cache
        // is in use from now on, so the reaper must free it when the thread ends.
        if (list.count == 0) (void)&reap;
        list.blocks[list.count++] = p;
        return;
    }
    ::operator delete(p);
}

}  // namespace hl::detail
