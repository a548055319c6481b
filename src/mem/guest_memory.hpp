// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "mem/address.hpp"
#include "util/mapping.hpp"
#include "util/unique_fd.hpp"

namespace hl::mem {

/// A sandbox's guest memory: one memfd, mapped shared into the host and handed to KVM as one slot at
/// guest physical address 0. This is the only place that turns a guest address into a host pointer;
/// every access is bounds-checked, so a guest-provided address or length can never reach outside.
class guest_memory {
public:
    /// Creates zeroed memory of `size` bytes (a multiple of the page size). Throws std::system_error.
    static guest_memory create(std::uint64_t size);

    std::uint64_t size() const noexcept { return map_.size(); }
    int fd() const noexcept { return fd_.get(); }
    /// The host address of guest address 0, for KVM_SET_USER_MEMORY_REGION only.
    void* host_base() const noexcept { return map_.data(); }

    /// True when [addr, addr + len) lies inside guest memory (overflow-safe).
    bool contains(gpa addr, std::uint64_t len) const noexcept {
        return addr.value <= size() && len <= size() - addr.value;
    }

    /// The host view of [addr, addr + len). Throws hl::error(errc::protocol_error) when out of bounds:
    /// callers pass guest-controlled values through here unchecked.
    std::span<std::byte> span(gpa addr, std::uint64_t len);
    std::span<const std::byte> span(gpa addr, std::uint64_t len) const;

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
        std::memcpy(span(addr, sizeof(T)).data(), &value, sizeof(T));
    }

private:
    guest_memory(util::unique_fd fd, util::mapping map) noexcept : fd_(std::move(fd)), map_(std::move(map)) {}

    util::unique_fd fd_;
    util::mapping map_;
};

}  // namespace hl::mem
