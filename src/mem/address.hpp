// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <compare>
#include <cstdint>

namespace hl::mem {

inline constexpr std::uint64_t page_size = 4096;

constexpr std::uint64_t page_round_up(std::uint64_t n) noexcept { return (n + page_size - 1) & ~(page_size - 1); }
constexpr std::uint64_t page_round_down(std::uint64_t n) noexcept { return n & ~(page_size - 1); }

/// A guest physical address (identical to the guest virtual address: memory is identity mapped).
/// Deliberately not convertible to a host pointer: guest_memory is the only place that translates.
struct gpa {
    std::uint64_t value = 0;

    constexpr gpa operator+(std::uint64_t offset) const noexcept { return {value + offset}; }
    constexpr std::uint64_t operator-(gpa other) const noexcept { return value - other.value; }
    constexpr auto operator<=>(const gpa&) const noexcept = default;
};

}  // namespace hl::mem
