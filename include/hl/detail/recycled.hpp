// SPDX-License-Identifier: Apache-2.0
// Memory for objects made and freed at call rate (a call's state, an async operation).
#pragma once

#include <cstddef>

namespace hl::detail {

/// A few blocks kept per thread: an object that is made and freed on one thread, call after call,
/// costs no heap allocation after the first. Blocks up to max_size bytes are recycled; larger
/// requests go to the heap.
struct recycled_memory {
    static constexpr std::size_t max_size = 512;
    static void* allocate(std::size_t size);
    static void deallocate(void* p, std::size_t size) noexcept;
};

/// A base class whose derived objects are allocated from recycled_memory (with a virtual
/// destructor, `delete` through the base frees with the object's real size).
struct recycled {
    static void* operator new(std::size_t size) { return recycled_memory::allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept { recycled_memory::deallocate(p, size); }
};

}  // namespace hl::detail
