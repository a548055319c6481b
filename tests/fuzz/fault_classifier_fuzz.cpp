// SPDX-License-Identifier: Apache-2.0
// The fault classifier on any guest state: registers and the bytes at RIP come from the fuzzer,
// over an address space shaped like a sandbox's. It must never throw and always name the fault.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_support.hpp"
#include "sandbox/fault.hpp"

namespace {

using hl::detail::page_info;
constexpr std::uint64_t page = 4096;
constexpr std::uint64_t code_begin = 0x200000, code_size = 2 * page;
constexpr std::uint64_t heap_begin = 0x300000, heap_end = 0x304000;
constexpr std::uint64_t guard_begin = 0x3ff000, stack_begin = 0x400000, stack_end = 0x408000;
constexpr std::uint64_t tables_begin = 0x100000, tables_end = 0x101000;

page_info info(std::uint64_t a) {
    if (a >= code_begin && a < code_begin + code_size) return {true, true, false, true};
    if ((a >= heap_begin && a < heap_end) || (a >= stack_begin && a < stack_end)) return {true, true, true, false};
    if (a >= tables_begin && a < tables_end) return {true, false, true, false};
    return {};
}

// Register values near the regions matter most; a register's top byte says whether to fold it there.
std::uint64_t steer(std::uint64_t v) {
    static constexpr std::uint64_t anchors[] = {0, code_begin, heap_begin, guard_begin, stack_begin, stack_end - 8, tables_begin};
    switch (v >> 60) {
    case 0: case 1: case 2: return anchors[(v >> 56) % std::size(anchors)] + (v & 0x1fff) - 0x100;
    default: return v;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    hl::detail::cpu_state cpu;
    std::uint64_t regs[21] = {};
    const std::size_t reg_bytes = std::min(size, sizeof regs);
    std::memcpy(regs, data, reg_bytes);
    std::uint64_t* fields[] = {&cpu.rax, &cpu.rbx, &cpu.rcx, &cpu.rdx, &cpu.rsi, &cpu.rdi, &cpu.rsp,
                               &cpu.rbp, &cpu.r8,  &cpu.r9,  &cpu.r10, &cpu.r11, &cpu.r12, &cpu.r13,
                               &cpu.r14, &cpu.r15, &cpu.rip, &cpu.rflags, &cpu.cr2, &cpu.fs_base, &cpu.gs_base};
    for (std::size_t i = 0; i < std::size(fields); ++i) *fields[i] = i == 17 ? regs[i] : steer(regs[i]);
    // The code pages hold the rest of the input, repeated; RIP lands in them unless steered away.
    unsigned char code[code_size] = {};
    if (size > reg_bytes) {
        for (std::size_t i = 0; i < code_size; ++i) code[i] = data[reg_bytes + i % (size - reg_bytes)];
    }
    hl::detail::fault_context ctx;
    ctx.cpu = cpu;
    ctx.page = info;
    ctx.read = [&](std::uint64_t addr, std::span<std::byte> out) {
        std::size_t n = 0;
        for (; n < out.size(); ++n) {
            const std::uint64_t a = addr + n;
            const auto p = info(a);
            if (a < addr || !p.present || !p.user) break;
            out[n] = a >= code_begin && a < code_begin + code_size ? std::byte{code[a - code_begin]} : std::byte{0};
        }
        return n;
    };
    ctx.describe = [](std::uint64_t a) -> std::string { return info(a).present ? "mapped" : "unmapped"; };
    ctx.stack_guard_begin = guard_begin;
    ctx.stack_guard_end = stack_begin;
    ctx.io_ports_begin = 0x100;
    ctx.io_ports_end = 0x108;
    const auto report = hl::detail::classify_fault(ctx);
    hl::fuzz::expect(report.code == hl::errc::guest_fault || report.code == hl::errc::stack_overflow,
                     "a fault classified with another code", report.message);
    hl::fuzz::expect(!report.message.empty() && !report.kind.empty(), "a fault without a name");
    return 0;
}
