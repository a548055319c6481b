// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "mem/address.hpp"
#include "mem/page_bitmap.hpp"
#include "util/mapping.hpp"

namespace hl::mem {

/// A sandbox's guest memory, handed to KVM as one slot at guest physical address 0: either a fresh
/// memfd mapped shared, or a snapshot's memfd mapped private (copy-on-write, so many sandboxes share
/// one copy). This is the only place that turns a guest address into a host pointer; every access is
/// bounds-checked, so a guest-provided address or length can never reach outside. Reading and writing
/// are separate: span() and read() only read, whatever the object's constness; writable(), write() and
/// write_bytes() record the pages they touch as host-written (KVM's dirty log only sees the guest's own
/// writes), so that restore copies them back. A read never marks a page.
class guest_memory {
public:
    /// Creates zeroed memory of `size` bytes (a multiple of the page size). Throws std::system_error.
    static guest_memory create(std::uint64_t size);

    /// Maps `size` bytes of the file `fd` privately: reads see the file, writes stay in this mapping.
    static guest_memory map_private(int fd, std::uint64_t size);

    std::uint64_t size() const noexcept { return map_.size(); }
    std::uint64_t pages() const noexcept { return map_.size() / page_size; }
    /// The host address of guest address 0, for KVM_SET_USER_MEMORY_REGION only.
    void* host_base() const noexcept { return map_.data(); }

    /// True when [addr, addr + len) lies inside guest memory (overflow-safe).
    bool contains(gpa addr, std::uint64_t len) const noexcept {
        return addr.value <= size() && len <= size() - addr.value;
    }

    /// The read-only host view of [addr, addr + len). Throws hl::error(errc::protocol_error) when out
    /// of bounds: callers pass guest-controlled values through here unchecked. Marks nothing.
    std::span<const std::byte> span(gpa addr, std::uint64_t len) const;

    /// The writable host view of [addr, addr + len), bounds-checked as span(). Marks every page it
    /// covers host-written, whether or not the caller then writes all of it: ask only for what you write.
    std::span<std::byte> writable(gpa addr, std::uint64_t len);

    /// Copies `bytes` to `addr`, bounds-checked; marks the pages written.
    void write_bytes(gpa addr, std::span<const std::byte> bytes) {
        if (!bytes.empty()) std::memcpy(writable(addr, bytes.size()).data(), bytes.data(), bytes.size());
    }

    /// Restore's writes: copy pages from `source` (the same offsets in a snapshot), or zero them,
    /// without recording them as host-written.
    void copy_pages_from(std::uint64_t first_page, std::uint64_t count, const std::byte* source);
    void zero_pages(std::uint64_t first_page, std::uint64_t count);

    /// Pages marked by writable(), write() and write_bytes() since the last clear_host_written(), and
    /// the indices of the bitmap's non-zero words (unordered).
    const page_bitmap& host_written() const noexcept { return host_written_; }
    const std::vector<std::uint32_t>& host_written_words() const noexcept { return host_written_words_; }
    void clear_host_written() noexcept {
        for (const auto w : host_written_words_) host_written_.word(w) = 0;
        host_written_words_.clear();
    }

    template <class T>
        requires std::is_trivially_copyable_v<T>
    T read(gpa addr) const {
        T value;
        std::memcpy(&value, span(addr, sizeof(T)).data(), sizeof(T));
        return value;
    }

    template <class T>
        requires std::is_trivially_copyable_v<T>
    void write(gpa addr, const T& value) {
        std::memcpy(writable(addr, sizeof(T)).data(), &value, sizeof(T));
    }

private:
    void check(gpa addr, std::uint64_t len) const;

    explicit guest_memory(util::mapping map) : map_(std::move(map)), host_written_(map_.size() / page_size) {}

    util::mapping map_;
    page_bitmap host_written_;
    std::vector<std::uint32_t> host_written_words_;
};

}  // namespace hl::mem
