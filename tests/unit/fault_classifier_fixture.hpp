// SPDX-License-Identifier: Apache-2.0
// For the fault classifier's unit tests: a fake guest address space and a fixture that classifies
// the CPU state it is given against it.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "sandbox/fault.hpp"

namespace hl::detail::test {

inline constexpr std::uint64_t page_size = 4096;
inline constexpr std::uint64_t code_begin = 0x200000, code_end = 0x202000;
inline constexpr std::uint64_t heap_begin = 0x300000, heap_end = 0x304000;
inline constexpr std::uint64_t guard_begin = 0x3ff000, guard_end = 0x400000;
inline constexpr std::uint64_t stack_begin = 0x400000, stack_end = 0x408000;
inline constexpr std::uint64_t tables_begin = 0x100000, tables_end = 0x101000;
inline constexpr std::uint64_t entry = 0x201000;

/// A guest address space made of 4 KiB pages with permissions, like the sandbox's layout: a null
/// page, supervisor-only page tables, code, heap, a stack guard page and the stack.
class fake_guest {
public:
    fake_guest() {
        name(0, page_size, "null page");
        map(tables_begin, tables_end, {true, false, true, false}, "page tables");
        map(code_begin, code_end, {true, true, false, true}, "code");
        map(heap_begin, heap_end, {true, true, true, false}, "heap");
        name(guard_begin, guard_end, "stack guard page");
        map(stack_begin, stack_end, {true, true, true, false}, "stack");
    }

    void write(std::uint64_t addr, std::initializer_list<std::uint8_t> bytes) {
        for (std::uint8_t b : bytes) {
            pages_.at(addr & ~(page_size - 1)).bytes[addr & (page_size - 1)] = std::byte{b};
            ++addr;
        }
    }

    void write_u64(std::uint64_t addr, std::uint64_t value) {
        for (int i = 0; i < 8; ++i) write(addr + i, {static_cast<std::uint8_t>(value >> (8 * i))});
    }

    fault_context context(const cpu_state& cpu) const {
        fault_context ctx;
        ctx.cpu = cpu;
        ctx.read = [this](std::uint64_t addr, std::span<std::byte> out) {
            std::size_t done = 0;
            while (done < out.size()) {
                const std::uint64_t at = addr + done;
                auto it = pages_.find(at & ~(page_size - 1));
                if (it == pages_.end() || !it->second.info.present || !it->second.info.user) break;
                out[done++] = it->second.bytes[at & (page_size - 1)];
            }
            return done;
        };
        ctx.page = [this](std::uint64_t addr) {
            auto it = pages_.find(addr & ~(page_size - 1));
            return it == pages_.end() ? page_info{} : it->second.info;
        };
        ctx.describe = [this](std::uint64_t addr) -> std::string {
            for (const auto& r : regions_)
                if (addr >= r.begin && addr < r.end) return r.name;
            return "unmapped";
        };
        ctx.stack_guard_begin = guard_begin;
        ctx.stack_guard_end = guard_end;
        return ctx;
    }

private:
    struct page {
        page_info info;
        std::array<std::byte, page_size> bytes{};
    };
    struct region {
        std::uint64_t begin, end;
        std::string name;
    };

    void map(std::uint64_t begin, std::uint64_t end, page_info info, const std::string& what) {
        for (std::uint64_t p = begin; p < end; p += page_size) pages_[p].info = info;
        name(begin, end, what);
    }
    void name(std::uint64_t begin, std::uint64_t end, const std::string& what) {
        regions_.push_back({begin, end, what});
    }

    std::map<std::uint64_t, page> pages_;
    std::vector<region> regions_;
};

class FaultClassifier : public ::testing::Test {
protected:
    FaultClassifier() {
        cpu.rip = entry;
        cpu.rsp = 0x407f00;
        cpu.rbp = 0x407f80;
    }

    fault_report run(std::initializer_list<std::uint8_t> code) {
        guest.write(cpu.rip, code);
        return classify();
    }

    fault_report classify() const {
        fault_context ctx = guest.context(cpu);
        ctx.io_ports_begin = allowed_ports_begin;
        ctx.io_ports_end = allowed_ports_end;
        return classify_fault(ctx);
    }

    static void expect_mentions(const fault_report& r, std::initializer_list<std::string> parts) {
        for (const auto& part : parts)
            EXPECT_NE(r.message.find(part), std::string::npos) << part << " not in: " << r.message;
    }

    static void expect_no_mention(const fault_report& r, const std::string& part) {
        EXPECT_EQ(r.message.find(part), std::string::npos) << part << " in: " << r.message;
    }

    fake_guest guest;
    cpu_state cpu;
    std::uint32_t allowed_ports_begin = 0x100, allowed_ports_end = 0x110;
};

inline constexpr std::uint64_t rflags_tf = 1u << 8, rflags_ac = 1u << 18;

}  // namespace hl::detail::test
