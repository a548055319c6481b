// SPDX-License-Identifier: Apache-2.0
#include "sandbox/x86_64_access.hpp"

#include <algorithm>
#include <array>
#include <span>

namespace hl::detail::x86 {
namespace {

__extension__ typedef __int128 int128;

std::int64_t sign_extend(std::uint64_t v, unsigned bits) {
    return bits == 64 ? static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v << (64 - bits)) >> (64 - bits);
}

}  // namespace

std::optional<std::uint64_t> read_value(const fault_context& ctx, std::uint64_t addr, std::size_t size) {
    std::array<std::byte, 8> bytes{};
    size = std::min(size, bytes.size());
    if (ctx.read(addr, std::span(bytes).first(size)) < size) return std::nullopt;
    std::uint64_t value = 0;
    for (std::size_t i = size; i-- > 0;) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    return value;
}

std::optional<finding> check(const fault_context& ctx, const access& a) {
    const std::uint64_t last = a.address + a.size - 1;
    if (!canonical(a.address)) return finding{violation::non_canonical, a.address, false, ""};
    if (last < a.address || !canonical(last)) return finding{violation::non_canonical, page_base(last), false, ""};
    if (a.alignment != 0 && a.address % a.alignment != 0)
        return finding{violation::misaligned, a.address, false,
                       "needs " + std::to_string(a.alignment) + "-byte alignment"};
    for (std::uint64_t addr : {a.address, std::max(a.address, page_base(last))}) {
        const page_info p = ctx.page(addr);
        // For a read-modify-write the read comes first, so an unreadable page is a read fault.
        if (!p.present) return finding{violation::page_fault, addr, !a.read, ""};
        if (!p.user) return finding{violation::page_fault, addr, !a.read, "the page is not accessible to the guest"};
        if (a.write && !p.writable) return finding{violation::page_fault, addr, true, "the page is read-only"};
    }
    return std::nullopt;
}

std::optional<finding> fault_at_cr2(const fault_context& ctx, const std::vector<access>& accesses) {
    const std::uint64_t cr2 = ctx.cpu.cr2;
    if (cr2 == 0) return std::nullopt;
    for (const access& a : accesses) {
        auto f = check(ctx, a);
        if (f && f->what == violation::page_fault && page_base(f->address) == page_base(cr2)) return f;
    }
    // CR2 inside an operand that checked clean as a read means the CPU wrote it: capstone's access
    // flags are not trustworthy for every instruction.
    for (access a : accesses) {
        if (cr2 < a.address || cr2 - a.address >= a.size) continue;
        a.read = false;
        a.write = true;
        if (auto f = check(ctx, a)) return f;
    }
    return std::nullopt;
}

std::optional<finding> first_violation(const fault_context& ctx, const std::vector<access>& accesses) {
    for (const access& a : accesses)
        if (auto f = check(ctx, a)) return f;
    return std::nullopt;
}

division_result divide(const cpu_state& cpu, bool is_signed, unsigned size, std::uint64_t divisor) {
    const unsigned bits = size * 8;
    const std::uint64_t mask = bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
    divisor &= mask;
    if (divisor == 0) return division_result::zero_divisor;
    const std::uint64_t low = size == 1 ? cpu.rax & 0xff : cpu.rax & mask;
    const std::uint64_t high = size == 1 ? (cpu.rax >> 8) & 0xff : cpu.rdx & mask;
    bool overflow = false;
    if (!is_signed) {
        overflow = high >= divisor;
    } else {
        const int128 dividend = int128{sign_extend(high, bits)} * (int128{1} << bits) + int128(low);
        const int128 d = sign_extend(divisor, bits);
        const int128 limit = int128{1} << (bits - 1);
        // A range check instead of dividend / -1, which overflows for the most negative dividend.
        if (d == -1) {
            overflow = dividend < -(limit - 1) || dividend > limit;
        } else {
            const int128 q = dividend / d;
            overflow = q < -limit || q > limit - 1;
        }
    }
    return overflow ? division_result::quotient_overflow : division_result::completes;
}

}  // namespace hl::detail::x86
