// SPDX-License-Identifier: Apache-2.0
// Whether an x86-64 instruction's accesses fault, judged against the guest's view of its pages and
// the CPU's rules (canonical addresses, SSE alignment), and whether a division traps. Used by the
// fault classifier; no state, no guest trust: every value may be hostile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sandbox/fault.hpp"
#include "sandbox/x86_64_instruction.hpp"

namespace hl::detail::x86 {

inline constexpr std::uint64_t page_size = 4096;

constexpr std::uint64_t page_base(std::uint64_t addr) noexcept { return addr & ~(page_size - 1); }

/// Bits 63..47 all equal: the address may be used at all.
constexpr bool canonical(std::uint64_t addr) noexcept {
    const std::uint64_t top = addr >> 47;
    return top == 0 || top == 0x1ffff;
}

constexpr bool guest_can_execute(const page_info& p) noexcept { return p.present && p.user && p.executable; }

/// The little-endian value of `size` (at most 8) bytes at `addr`, if the guest could read them all.
std::optional<std::uint64_t> read_value(const fault_context& ctx, std::uint64_t addr, std::size_t size);

enum class violation { non_canonical, misaligned, page_fault };

/// Why an access faults: at `address`, a write or not, and what about the page (may be empty).
struct finding {
    violation what;
    std::uint64_t address;
    bool write = false;
    std::string why;
};

/// The fault `a` raises, if any.
std::optional<finding> check(const fault_context& ctx, const access& a);

/// The access whose fault CR2 records: with CR2 set, a page fault happened on its page.
std::optional<finding> fault_at_cr2(const fault_context& ctx, const std::vector<access>& accesses);

/// The first access, in execution order, that faults.
std::optional<finding> first_violation(const fault_context& ctx, const std::vector<access>& accesses);

enum class division_result { completes, zero_divisor, quotient_overflow };

/// What div (or idiv when `is_signed`) by `divisor` of operand size `size` bytes does with the
/// dividend in cpu's rdx:rax (ah:al for one byte).
division_result divide(const cpu_state& cpu, bool is_signed, unsigned size, std::uint64_t divisor);

}  // namespace hl::detail::x86
