// SPDX-License-Identifier: Apache-2.0
#include "sandbox/fault.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace hl::detail {
namespace {

constexpr std::uint64_t page_size = 4096;
constexpr std::uint64_t code_begin = 0x200000, code_end = 0x202000;
constexpr std::uint64_t heap_begin = 0x300000, heap_end = 0x304000;
constexpr std::uint64_t guard_begin = 0x3ff000, guard_end = 0x400000;
constexpr std::uint64_t stack_begin = 0x400000, stack_end = 0x408000;
constexpr std::uint64_t tables_begin = 0x100000, tables_end = 0x101000;
constexpr std::uint64_t entry = 0x201000;

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

constexpr std::uint64_t rflags_tf = 1u << 8, rflags_ac = 1u << 18;

TEST_F(FaultClassifier, NamesANullPointerRead) {
    cpu.rax = 0;
    auto r = run({0x8b, 0x00});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0u);
    EXPECT_EQ(r.rip, entry);
    EXPECT_EQ(r.instruction, "mov eax, dword ptr [rax]");
    expect_mentions(r, {"page fault reading 0x0 (null page)", "at rip 0x201000", "mov eax, dword ptr [rax]"});
}

TEST_F(FaultClassifier, NamesANullPointerWriteEvenThoughCr2IsZero) {
    cpu.rax = 0;
    auto r = run({0xc7, 0x00, 0x01, 0x00, 0x00, 0x00});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, 0u);
    EXPECT_EQ(r.instruction, "mov dword ptr [rax], 1");
    EXPECT_EQ(r.message, "page fault writing 0x0 (null page) at rip 0x201000: mov dword ptr [rax], 1");
}

TEST_F(FaultClassifier, NamesAWriteToReadOnlyCode) {
    cpu.rax = 0x200010;
    cpu.cr2 = 0x200010;
    auto r = run({0x48, 0x89, 0x18});
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, 0x200010u);
    expect_mentions(r, {"writing 0x200010 (code)", "read-only", "mov qword ptr [rax], rbx"});
}

TEST_F(FaultClassifier, NamesAReadOfAnUnmappedPageThatCr2PointsAt) {
    cpu.rbx = 0x500008;
    cpu.cr2 = 0x500008;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500008u);
    expect_mentions(r, {"reading 0x500008 (unmapped)", "mov rax, qword ptr [rbx]"});
}

TEST_F(FaultClassifier, NamesAReadOfASupervisorOnlyPage) {
    cpu.rbx = tables_begin + 0x18;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, tables_begin + 0x18);
    expect_mentions(r, {"0x100018 (page tables)", "not accessible to the guest", "mov rax, qword ptr [rbx]"});
}

TEST_F(FaultClassifier, CallsAReadModifyWriteOfAnUnmappedPageARead) {
    cpu.rax = 0x500000;
    auto r = run({0x83, 0x00, 0x01});
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500000u);
    expect_mentions(r, {"0x500000 (unmapped)", "add dword ptr [rax], 1"});
}

TEST_F(FaultClassifier, CallsAReadModifyWriteOfReadOnlyCodeAWrite) {
    cpu.rax = 0x200040;
    auto r = run({0x83, 0x00, 0x01});
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, 0x200040u);
    expect_mentions(r, {"0x200040 (code)", "add dword ptr [rax], 1"});
}

TEST_F(FaultClassifier, SeesAnSseStoreAsAWriteThoughCapstoneCallsItARead) {
    cpu.rax = 0;
    auto r = run({0x0f, 0x11, 0x00});
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, 0u);
    expect_mentions(r, {"writing 0x0 (null page)", "movups xmmword ptr [rax], xmm0"});
}

TEST_F(FaultClassifier, NamesExecutionOfANonExecutablePage) {
    cpu.rip = heap_begin + 0x100;
    auto r = run({0x90});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "page fault (execute)");
    EXPECT_EQ(r.address, heap_begin + 0x100);
    EXPECT_EQ(r.instruction, "");
    expect_mentions(r, {"executing 0x300100 (heap)", "not executable"});
}

TEST_F(FaultClassifier, NamesAJumpToTheNullPage) {
    cpu.rip = 0;
    auto r = classify_fault(guest.context(cpu));
    EXPECT_EQ(r.kind, "page fault (execute)");
    EXPECT_EQ(r.address, 0u);
    expect_mentions(r, {"executing 0x0 (null page)", "not mapped"});
}

TEST_F(FaultClassifier, CallsExecutionInTheGuardPageAnExecuteFault) {
    cpu.rip = guard_begin + 0x10;
    auto r = classify_fault(guest.context(cpu));
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "page fault (execute)");
    EXPECT_EQ(r.address, guard_begin + 0x10);
    expect_mentions(r, {"0x3ff010 (stack guard page)"});
}

TEST_F(FaultClassifier, NamesUd2AnInvalidOpcode) {
    auto r = run({0x0f, 0x0b});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "invalid opcode");
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.instruction, "ud2");
    expect_mentions(r, {"invalid opcode at rip 0x201000: ud2"});
}

TEST_F(FaultClassifier, NamesUndecodableBytesAnInvalidOpcode) {
    auto r = run({0x06});  // push es: gone in 64-bit mode
    EXPECT_EQ(r.kind, "invalid opcode");
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.instruction, "");
    expect_mentions(r, {"at rip 0x201000", "undecodable bytes 06"});
}

TEST_F(FaultClassifier, NamesUndecodableBytesAtTheEndOfCodeAnInvalidOpcode) {
    cpu.rip = code_end - 1;
    auto r = run({0x06});
    EXPECT_EQ(r.kind, "invalid opcode");
    expect_mentions(r, {"at rip 0x201fff", "undecodable bytes 06"});
}

TEST_F(FaultClassifier, NamesAnInstructionCutOffByAnUnmappedPageAnExecuteFault) {
    cpu.rip = code_end - 3;
    auto r = run({0x48, 0x8b, 0x05});  // mov rax, [rip + disp32]: the disp32 would be on the next page
    EXPECT_EQ(r.kind, "page fault (execute)");
    EXPECT_EQ(r.address, code_end);
    EXPECT_EQ(r.instruction, "");
    expect_mentions(r, {"executing 0x202000 (unmapped)", "at rip 0x201ffd", "continues into a page"});
}

TEST_F(FaultClassifier, NamesADivisionByAZeroRegister) {
    cpu.rax = 10;
    cpu.rcx = 0;
    auto r = run({0x48, 0xf7, 0xf1});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "divide error");
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.instruction, "div rcx");
    expect_mentions(r, {"div rcx", "divisor rcx is zero"});
}

TEST_F(FaultClassifier, NamesADivisionByZeroInMemory) {
    cpu.rax = 10;
    cpu.rbx = heap_begin + 0x10;
    auto r = run({0x48, 0xf7, 0x33});
    EXPECT_EQ(r.kind, "divide error");
    EXPECT_EQ(r.address, heap_begin + 0x10);
    expect_mentions(r, {"div qword ptr [rbx]", "divisor at 0x300010 (heap) is zero"});
}

TEST_F(FaultClassifier, NamesADivisorInAnUnmappedPageAPageFault) {
    cpu.rbx = 0x500000;
    auto r = run({0x48, 0xf7, 0x33});
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500000u);
    expect_mentions(r, {"reading 0x500000 (unmapped)", "div qword ptr [rbx]"});
}

TEST_F(FaultClassifier, NamesTheSignedOverflowOfInt64MinByMinusOne) {
    cpu.rax = 0x8000000000000000;
    cpu.rdx = ~std::uint64_t{0};
    cpu.rcx = ~std::uint64_t{0};
    auto r = run({0x48, 0xf7, 0xf9});
    EXPECT_EQ(r.kind, "divide error");
    EXPECT_EQ(r.address, std::nullopt);
    expect_mentions(r, {"idiv rcx", "quotient does not fit"});
}

TEST_F(FaultClassifier, NamesTheSignedOverflowOfTheMostNegativeDividend) {
    cpu.rdx = 0x8000000000000000;
    cpu.rax = 0;
    for (std::uint64_t divisor : {~std::uint64_t{0}, std::uint64_t{2}}) {
        cpu.rcx = divisor;
        auto r = run({0x48, 0xf7, 0xf9});
        EXPECT_EQ(r.kind, "divide error");
        expect_mentions(r, {"idiv rcx", "quotient does not fit"});
    }
}

TEST_F(FaultClassifier, NamesAnUnsignedQuotientOverflow) {
    cpu.rdx = 5;
    cpu.rcx = 5;
    auto r = run({0x48, 0xf7, 0xf1});
    EXPECT_EQ(r.kind, "divide error");
    expect_mentions(r, {"div rcx", "quotient does not fit", "the divisor rcx is 0x5"});
}

TEST_F(FaultClassifier, DoesNotBlameADivisionThatWouldSucceed) {
    cpu.rax = 100;
    cpu.rdx = 0;
    cpu.rcx = 7;
    auto r = run({0x48, 0xf7, 0xf1});
    EXPECT_EQ(r.kind, "general protection");
    expect_mentions(r, {"div rcx", "could not be determined"});
}

TEST_F(FaultClassifier, NamesHltAPrivilegedInstruction) {
    auto r = run({0xf4});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    EXPECT_EQ(r.address, std::nullopt);
    expect_mentions(r, {"at rip 0x201000: hlt", "privileged"});
}

TEST_F(FaultClassifier, NamesCliAPrivilegedInstruction) {
    auto r = run({0xfa});
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {": cli"});
}

TEST_F(FaultClassifier, NamesAMoveToCr3APrivilegedInstruction) {
    auto r = run({0x0f, 0x22, 0xd8});
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {"mov cr3, rax"});
}

TEST_F(FaultClassifier, NamesIretqAPrivilegedInstruction) {
    auto r = run({0x48, 0xcf});
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {"iretq"});
}

TEST_F(FaultClassifier, NamesThePortOfAnOutWithAnImmediatePort) {
    auto r = run({0xe6, 0x60});
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    EXPECT_EQ(r.address, std::nullopt);
    expect_mentions(r, {"out 0x60, al", "I/O to port 0x60 not permitted"});
}

TEST_F(FaultClassifier, NamesThePortOfAnOutThroughDx) {
    cpu.rdx = 0xffff0060;
    auto r = run({0xee});
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {"out dx, al", "I/O to port 0x60 not permitted"});
}

TEST_F(FaultClassifier, NamesThePortOfAnInThroughDx) {
    cpu.rdx = 0x3f8;
    auto r = run({0xec});
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {"in al, dx", "I/O from port 0x3f8 not permitted"});
}

TEST_F(FaultClassifier, SaysSystemCallsAreNotAvailable) {
    auto r = run({0x0f, 0x05});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "invalid opcode (system calls are not available to guests)");
    EXPECT_EQ(r.address, std::nullopt);
    expect_mentions(r, {"at rip 0x201000: syscall", "system calls are not available"});
}

TEST_F(FaultClassifier, SaysGuestsHaveNoInterruptHandlersForInt3) {
    auto r = run({0xcc});
    EXPECT_EQ(r.kind, "software interrupt (guests have no interrupt handlers)");
    EXPECT_EQ(r.address, std::nullopt);
    expect_mentions(r, {"at rip 0x201000: int3", "no interrupt handlers"});
}

TEST_F(FaultClassifier, SaysGuestsHaveNoInterruptHandlersForIntN) {
    auto r = run({0xcd, 0x80});
    EXPECT_EQ(r.kind, "software interrupt (guests have no interrupt handlers)");
    expect_mentions(r, {"int 0x80"});
}

TEST_F(FaultClassifier, NamesAPushIntoTheGuardPageAStackOverflow) {
    cpu.rsp = guard_end;
    cpu.cr2 = guard_end - 8;
    auto r = run({0x50});
    EXPECT_EQ(r.code, errc::stack_overflow);
    EXPECT_EQ(r.kind, "stack overflow");
    EXPECT_EQ(r.address, guard_end - 8);
    EXPECT_EQ(r.message, "stack overflow: wrote 0x3ffff8 in the stack guard page at rip 0x201000: push rax");
}

TEST_F(FaultClassifier, NamesACallIntoTheGuardPageAStackOverflow) {
    cpu.rsp = guard_end;
    auto r = run({0xe8, 0xfb, 0x00, 0x00, 0x00});
    EXPECT_EQ(r.code, errc::stack_overflow);
    EXPECT_EQ(r.kind, "stack overflow");
    EXPECT_EQ(r.address, guard_end - 8);
    expect_mentions(r, {"wrote 0x3ffff8 in the stack guard page", "call 0x201100"});
}

TEST_F(FaultClassifier, NamesAStoreBelowRspIntoTheGuardPageAStackOverflow) {
    cpu.rsp = guard_end + 0x4;
    auto r = run({0x48, 0x89, 0x44, 0x24, 0xf8});
    EXPECT_EQ(r.code, errc::stack_overflow);
    EXPECT_EQ(r.address, guard_end - 4);
    expect_mentions(r, {"wrote 0x3ffffc in the stack guard page", "mov qword ptr [rsp - 8], rax"});
}

TEST_F(FaultClassifier, NamesRspInsideTheGuardPageAStackOverflow) {
    cpu.rsp = guard_begin + 0x800;
    auto r = run({0x90});
    EXPECT_EQ(r.code, errc::stack_overflow);
    EXPECT_EQ(r.kind, "stack overflow");
    EXPECT_EQ(r.address, std::nullopt);
    expect_mentions(r, {"rsp 0x3ff800 is in the stack guard page", ": nop"});
}

TEST_F(FaultClassifier, NamesANonCanonicalAddressAGeneralProtectionFault) {
    cpu.rbx = 0x8000000000000000;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "general protection (non-canonical address 0x8000000000000000)");
    EXPECT_EQ(r.address, 0x8000000000000000u);
    expect_mentions(r, {"0x8000000000000000", "mov rax, qword ptr [rbx]"});
}

TEST_F(FaultClassifier, NamesAReturnToANonCanonicalAddress) {
    guest.write_u64(cpu.rsp, 0x0000800000000000);
    auto r = run({0xc3});
    EXPECT_EQ(r.kind, "general protection (non-canonical address 0x800000000000)");
    EXPECT_EQ(r.address, 0x800000000000u);
    expect_mentions(r, {"0x800000000000", ": ret"});
}

TEST_F(FaultClassifier, NamesAMisalignedMovaps) {
    cpu.rax = heap_begin + 8;
    auto r = run({0x0f, 0x29, 0x00});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "general protection (misaligned SSE operand)");
    EXPECT_EQ(r.address, heap_begin + 8);
    expect_mentions(r, {"0x300008 (heap)", "movaps xmmword ptr [rax], xmm0", "16-byte"});
}

TEST_F(FaultClassifier, AcceptsAnAlignedMovapsAndLooksFurther) {
    cpu.rax = heap_begin + 16;
    auto r = run({0x0f, 0x29, 0x00});
    EXPECT_EQ(r.kind, "general protection");
    expect_mentions(r, {"could not be determined"});
}

TEST_F(FaultClassifier, ResolvesARipRelativeLoadFromTheNextInstruction) {
    auto r = run({0x48, 0x8b, 0x05, 0xf9, 0xef, 0x2f, 0x00});  // [rip + 0x2feff9] = 0x500000
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500000u);
    expect_mentions(r, {"reading 0x500000 (unmapped)", "mov rax, qword ptr [rip + 0x2feff9]"});
}

TEST_F(FaultClassifier, NamesARepStosIntoTheNullPage) {
    cpu.rdi = 0x40;
    cpu.rcx = 16;
    auto r = run({0xf3, 0xaa});
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, 0x40u);
    expect_mentions(r, {"writing 0x40 (null page)", "rep stosb byte ptr [rdi], al"});
}

TEST_F(FaultClassifier, FallsBackToCr2WhenTheInstructionDoesNotExplainIt) {
    cpu.cr2 = 0x500123;
    auto r = run({0x90});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "page fault");
    EXPECT_EQ(r.address, 0x500123u);
    expect_mentions(r, {"0x500123 (unmapped)", ": nop"});
}

TEST_F(FaultClassifier, CanClassifyFromSeveralThreadsAtOnce) {
    cpu.rax = 0;
    guest.write(cpu.rip, {0xc7, 0x00, 0x01, 0x00, 0x00, 0x00});
    const fault_context ctx = guest.context(cpu);
    std::vector<std::thread> threads;
    std::atomic<int> right{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 50; ++i)
                if (classify_fault(ctx).kind == "page fault (write)") ++right;
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(right, 200);
}

TEST_F(FaultClassifier, NeverThrowsForAnyGuestState) {
    std::mt19937_64 random(12345);
    const std::uint64_t interesting[] = {0, 1, 2, entry, entry + 1, code_end - 1, heap_begin + 3, guard_end,
                                         0x7fffffffffff, 0x800000000000, ~std::uint64_t{0}, ~std::uint64_t{0} - 1};
    auto pick = [&] { return random() % 2 ? interesting[random() % std::size(interesting)] : random(); };
    for (int i = 0; i < 2000; ++i) {
        for (std::uint64_t a = code_begin; a < code_end; a += 8) guest.write_u64(a, random());
        for (std::uint64_t cpu_state::*r : {&cpu_state::rax, &cpu_state::rbx, &cpu_state::rcx, &cpu_state::rdx,
                                             &cpu_state::rsi, &cpu_state::rdi, &cpu_state::rsp, &cpu_state::rbp,
                                             &cpu_state::rip, &cpu_state::rflags, &cpu_state::cr2,
                                             &cpu_state::fs_base, &cpu_state::gs_base})
            cpu.*r = pick();
        if (i % 2) cpu.rip = code_begin + random() % (code_end - code_begin);
        EXPECT_NO_THROW(classify()) << "iteration " << i;
    }
}

TEST_F(FaultClassifier, SaysWhenTheCauseCannotBeDetermined) {
    auto r = run({0x90});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "general protection");
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.instruction, "nop");
    EXPECT_EQ(r.message, "general protection at rip 0x201000: nop (the cause could not be determined)");
}

TEST_F(FaultClassifier, NamesAnInt3ThatTheCpuReportedAfterTheInstruction) {
    guest.write(entry, {0xcc, 0x90});
    cpu.rip = entry + 1;
    auto r = classify();
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "breakpoint (int3)");
    EXPECT_EQ(r.rip, entry);
    EXPECT_EQ(r.instruction, "int3");
    EXPECT_EQ(r.message,
              "breakpoint at rip 0x201000: int3 (guests have no debug handlers; the CPU stopped after it, at rip "
              "0x201001)");
}

TEST_F(FaultClassifier, NamesTheTwoByteInt3AfterTheInstruction) {
    guest.write(entry, {0xcd, 0x03, 0x90});
    cpu.rip = entry + 2;
    auto r = classify();
    EXPECT_EQ(r.kind, "breakpoint (int3)");
    EXPECT_EQ(r.rip, entry);
    expect_mentions(r, {"breakpoint at rip 0x201000: int 3", "stopped after it, at rip 0x201002"});
}

TEST_F(FaultClassifier, NamesAnIcebpThatTheCpuReportedAfterTheInstruction) {
    guest.write(entry, {0xf1, 0x90});
    cpu.rip = entry + 1;
    auto r = classify();
    EXPECT_EQ(r.kind, "debug trap (icebp)");
    EXPECT_EQ(r.rip, entry);
    expect_mentions(r, {"debug trap at rip 0x201000: int1", "no debug handlers"});
}

TEST_F(FaultClassifier, NamesAnIcebpReportedAtTheInstructionADebugTrap) {
    auto r = run({0xf1});
    EXPECT_EQ(r.kind, "debug trap (icebp)");
    EXPECT_EQ(r.rip, entry);
    EXPECT_EQ(r.message, "debug trap at rip 0x201000: int1 (guests have no debug handlers)");
}

TEST_F(FaultClassifier, NamesAnInt3BeforeAnInstructionItCannotDecode) {
    guest.write(entry, {0xcc, 0x66, 0x0f, 0x38, 0xf8, 0x06});
    cpu.rip = entry + 1;
    auto r = classify();
    EXPECT_EQ(r.kind, "breakpoint (int3)");
    EXPECT_EQ(r.rip, entry);
}

TEST_F(FaultClassifier, BlamesTheInstructionAtRipWhenItFaultsThoughTheByteBeforeIsCc) {
    guest.write(entry, {0x8b, 0x4d, 0xcc});  // mov ecx, dword ptr [rbp - 0x34]
    cpu.rip = entry + 3;
    cpu.rax = 10;
    cpu.rcx = 0;
    auto r = run({0xf7, 0xf1});
    EXPECT_EQ(r.kind, "divide error");
    expect_mentions(r, {"at rip 0x201003: div ecx"});
}

TEST_F(FaultClassifier, DoesNotCallTheNextInstructionAfterAnInt3TheCause) {
    guest.write(entry, {0xcc});
    cpu.rip = entry + 1;
    cpu.rdx = 0x10c;
    auto r = run({0xee});  // out dx, al to a port the guest may use
    EXPECT_EQ(r.kind, "breakpoint (int3)");
    expect_no_mention(r, "not permitted");
}

TEST_F(FaultClassifier, NamesASingleStepTrapNotTheAllowedOutItStoppedBefore) {
    guest.write(entry, {0x90});
    cpu.rip = entry + 1;
    cpu.rflags = rflags_tf | 0x2;
    cpu.rdx = 0x10c;
    auto r = run({0xef});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "single-step trap");
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.rip, entry + 1);
    EXPECT_EQ(r.instruction, "");
    EXPECT_EQ(r.message,
              "single-step trap before rip 0x201001: out dx, eax, which has not run (the guest set RFLAGS.TF, so the "
              "CPU trapped after the instruction before it; guests have no debug handlers)");
}

TEST_F(FaultClassifier, NamesASingleStepTrapBeforeAnInstructionThatWouldFault) {
    cpu.rflags = rflags_tf | 0x2;
    cpu.rax = 0;
    auto r = run({0xc7, 0x00, 0x01, 0x00, 0x00, 0x00});
    EXPECT_EQ(r.kind, "single-step trap");
    expect_mentions(r, {"mov dword ptr [rax], 1, which has not run"});
}

TEST_F(FaultClassifier, NamesASingleStepTrapOnAJumpIntoUnmappedMemory) {
    cpu.rflags = rflags_tf | 0x2;
    cpu.rip = 0x500000;
    auto r = classify();
    EXPECT_EQ(r.kind, "single-step trap");
    expect_mentions(r, {"before rip 0x500000 (the guest set RFLAGS.TF"});
}

TEST_F(FaultClassifier, BlamesTheInstructionRightAfterThePopfThatSetTf) {
    guest.write(entry, {0x9d});  // popfq: no trap after the instruction that sets TF
    cpu.rip = entry + 1;
    cpu.rflags = rflags_tf | 0x2;
    auto r = run({0x0f, 0x0b});
    EXPECT_EQ(r.kind, "invalid opcode");
    expect_mentions(r, {"at rip 0x201001: ud2"});
}

TEST_F(FaultClassifier, NamesASingleStepTrapAfterPopfWhenTheInstructionAtRipIsHarmless) {
    guest.write(entry, {0x9d});
    cpu.rip = entry + 1;
    cpu.rflags = rflags_tf | 0x2;
    auto r = run({0x90});
    EXPECT_EQ(r.kind, "single-step trap");
}

TEST_F(FaultClassifier, TakesAPageFaultInCr2OverTheTrapFlag) {
    cpu.rflags = rflags_tf | 0x2;
    cpu.rbx = 0x500008;
    cpu.cr2 = 0x500008;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.kind, "page fault (read)");
    expect_mentions(r, {"reading 0x500008 (unmapped)"});
}

TEST_F(FaultClassifier, DoesNotBlameAnOutToAPortTheGuestMayUse) {
    cpu.rdx = 0x10c;
    auto r = run({0xef});
    EXPECT_EQ(r.kind, "general protection");
    expect_no_mention(r, "not permitted");
    expect_mentions(r, {"out dx, eax", "could not be determined"});
}

TEST_F(FaultClassifier, NamesThePortAWideInReachesPastTheAllowedOnes) {
    cpu.rdx = 0x10f;
    auto r = run({0xed});  // in eax, dx: ports 0x10f-0x112
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {"I/O from port 0x110 not permitted", "4-byte access at port 0x10f"});
    r = run({0x66, 0xed});  // in ax, dx
    expect_mentions(r, {"I/O from port 0x110 not permitted", "2-byte access at port 0x10f"});
    r = run({0x6d});  // insd
    expect_mentions(r, {"I/O from port 0x110 not permitted", "4-byte access"});
    cpu.rdx = 0x10c;
    r = run({0xed});  // in eax, dx: ports 0x10c-0x10f, all allowed
    expect_no_mention(r, "not permitted");
}

TEST_F(FaultClassifier, NamesAPageFaultOnTheSourceOfOutsToAnAllowedPort) {
    cpu.rsi = 0x500000;
    cpu.rcx = 4;
    cpu.rdx = 0x10c;
    cpu.cr2 = 0x500000;
    auto r = run({0xf3, 0x6e});
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500000u);
    expect_mentions(r, {"page fault reading 0x500000 (unmapped)", "rep outsb dx, byte ptr [rsi]"});
    expect_no_mention(r, "not permitted");
}

TEST_F(FaultClassifier, NamesAPageFaultOnTheSourceOfOutsWhenCr2RecordsIt) {
    cpu.rsi = 0x500000;
    cpu.rdx = 0x80;
    cpu.cr2 = 0x500000;
    auto r = run({0x6e});
    EXPECT_EQ(r.kind, "page fault (read)");
    expect_no_mention(r, "not permitted");
}

TEST_F(FaultClassifier, NamesOutsFromASupervisorOnlyPageToAnAllowedPortAPageFault) {
    cpu.rsi = tables_begin;
    cpu.rdx = 0x10c;
    auto r = run({0x6e});
    EXPECT_EQ(r.kind, "page fault (read)");
    expect_mentions(r, {"0x100000 (page tables)", "not accessible to the guest"});
}

TEST_F(FaultClassifier, NamesInsIntoReadOnlyCodeAPageFault) {
    cpu.rdi = code_begin + 0x10;
    cpu.rdx = 0x10c;
    cpu.cr2 = code_begin + 0x10;
    auto r = run({0x6c});
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, code_begin + 0x10);
    expect_mentions(r, {"writing 0x200010 (code)", "read-only", "insb byte ptr [rdi], dx"});
}

TEST_F(FaultClassifier, KeepsTheForbiddenPortOfOutsWhenNoPageFaultHappened) {
    cpu.rsi = 0x500000;
    cpu.rdx = 0x80;
    auto r = run({0x6e});  // the CPU checks the port before it reads memory
    EXPECT_EQ(r.kind, "general protection (privileged instruction)");
    expect_mentions(r, {"I/O to port 0x80 not permitted"});
}

TEST_F(FaultClassifier, NamesASystemCallThatEnteredLstarAtTheNullPage) {
    guest.write(entry, {0x0f, 0x05});
    cpu.rip = 0;
    cpu.rcx = entry + 2;
    cpu.r11 = 0x202;
    cpu.rax = 39;
    auto r = classify();
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "system call");
    EXPECT_EQ(r.rip, entry);
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.instruction, "syscall");
    EXPECT_EQ(r.message, "the guest made system call 39 at rip 0x201000: syscall (guests cannot make system calls)");
}

TEST_F(FaultClassifier, KeepsAJumpToTheNullPageWhenRcxDoesNotFollowASyscall) {
    guest.write(entry, {0x90, 0x90});
    cpu.rip = 0;
    cpu.rcx = entry + 2;
    auto r = classify();
    EXPECT_EQ(r.kind, "page fault (execute)");
    expect_mentions(r, {"executing 0x0 (null page)"});
}

TEST_F(FaultClassifier, NamesAMisalignedLoadWithRflagsAcAnAlignmentCheck) {
    cpu.rflags = rflags_ac | 0x2;
    cpu.rbx = heap_begin + 3;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "alignment check");
    EXPECT_EQ(r.address, heap_begin + 3);
    EXPECT_EQ(r.message,
              "alignment check at rip 0x201000: mov rax, qword ptr [rbx] (the guest set RFLAGS.AC, and the 8-byte "
              "access at 0x300003 (heap) is not 8-byte aligned)");
}

TEST_F(FaultClassifier, NamesAPushFromAMisalignedStackWithRflagsAcAnAlignmentCheck) {
    cpu.rflags = rflags_ac | 0x2;
    cpu.rsp = stack_begin + 0x104;
    auto r = run({0x50});
    EXPECT_EQ(r.kind, "alignment check");
    EXPECT_EQ(r.address, stack_begin + 0xfc);
    expect_mentions(r, {"8-byte access at 0x4000fc (stack)"});
}

TEST_F(FaultClassifier, DoesNotCallAnAlignedAccessWithRflagsAcAnAlignmentCheck) {
    cpu.rflags = rflags_ac | 0x2;
    cpu.rbx = heap_begin + 8;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.kind, "general protection");
}

TEST_F(FaultClassifier, DoesNotCallAMisalignedAccessWithoutRflagsAcAnAlignmentCheck) {
    cpu.rbx = heap_begin + 3;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.kind, "general protection");
}

TEST_F(FaultClassifier, RanksAPageFaultAboveAnAlignmentCheck) {
    cpu.rflags = rflags_ac | 0x2;
    cpu.rbx = 0x500003;
    auto r = run({0x48, 0x8b, 0x03});
    EXPECT_EQ(r.kind, "page fault (read)");
}

TEST_F(FaultClassifier, NamesVmcallAHypervisorCall) {
    auto r = run({0x0f, 0x01, 0xc1});
    EXPECT_EQ(r.kind, "hypervisor call (guests cannot call the hypervisor)");
    EXPECT_EQ(r.message, "hypervisor call at rip 0x201000: vmcall (guests cannot call the hypervisor)");
}

TEST_F(FaultClassifier, NamesVmmcallAHypervisorCall) {
    auto r = run({0x0f, 0x01, 0xd9});
    EXPECT_EQ(r.kind, "hypervisor call (guests cannot call the hypervisor)");
    expect_mentions(r, {": vmmcall"});
}

TEST_F(FaultClassifier, SaysMovdir64bCouldNotBeDecodedRatherThanCallingItInvalid) {
    auto r = run({0x66, 0x0f, 0x38, 0xf8, 0x06, 0x90, 0x90, 0x90});
    EXPECT_EQ(r.code, errc::guest_fault);
    EXPECT_EQ(r.kind, "undecodable instruction");
    EXPECT_EQ(r.address, std::nullopt);
    EXPECT_EQ(r.instruction, "");
    EXPECT_EQ(r.message,
              "fault on an undecodable instruction at rip 0x201000 (the instruction could not be decoded: bytes 66 0f "
              "38 f8 06 90 90 90; the CPU may not support it either)");
}

TEST_F(FaultClassifier, SaysAnAmxInstructionCouldNotBeDecoded) {
    auto r = run({0xc4, 0xe2, 0x78, 0x49, 0x00});  // ldtilecfg [rax]
    EXPECT_EQ(r.kind, "undecodable instruction");
    expect_mentions(r, {"could not be decoded: bytes c4 e2 78 49 00"});
    expect_no_mention(r, "invalid opcode");
}

TEST_F(FaultClassifier, NamesThePageFaultOfAnUndecodableInstructionFromCr2) {
    cpu.cr2 = 0x500040;
    auto r = run({0x66, 0x0f, 0x38, 0xf8, 0x06});
    EXPECT_EQ(r.kind, "page fault");
    EXPECT_EQ(r.address, 0x500040u);
    expect_mentions(r, {"page fault on 0x500040 (unmapped)", "could not be decoded: bytes 66 0f 38 f8 06"});
}

TEST_F(FaultClassifier, AddsTheFsBaseToAnFsRelativeLoad) {
    cpu.fs_base = 0x500000;
    auto r = run({0x64, 0x48, 0x8b, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00});
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500010u);
    expect_mentions(r, {"page fault reading 0x500010 (unmapped)", "mov rax, qword ptr fs:[0x10]"});
}

TEST_F(FaultClassifier, AddsTheGsBaseToAGsRelativeStore) {
    cpu.gs_base = code_begin;
    cpu.cr2 = code_begin + 0x20;
    auto r = run({0x65, 0x48, 0xc7, 0x04, 0x25, 0x20, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00});
    EXPECT_EQ(r.kind, "page fault (write)");
    EXPECT_EQ(r.address, code_begin + 0x20);
    expect_mentions(r, {"writing 0x200020 (code)", "read-only", "gs:[0x20]"});
}

TEST_F(FaultClassifier, AddsTheFsBaseAfterWrappingA32BitAddress) {
    cpu.fs_base = 0x500000;
    cpu.rax = 0x100000010;
    auto r = run({0x64, 0x67, 0x8b, 0x00});  // mov eax, dword ptr fs:[eax]
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0x500010u);
}

TEST_F(FaultClassifier, DoesNotCallAnFsRelativeLoadOfMappedMemoryANullPageFault) {
    cpu.fs_base = heap_begin;
    auto r = run({0x64, 0x48, 0x8b, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00});
    EXPECT_EQ(r.kind, "general protection");
    expect_no_mention(r, "null page");
}

TEST_F(FaultClassifier, IgnoresTheFsBaseForOtherSegments) {
    cpu.fs_base = heap_begin;
    cpu.rax = 0;
    auto r = run({0x8b, 0x00});
    EXPECT_EQ(r.kind, "page fault (read)");
    EXPECT_EQ(r.address, 0u);
}

}  // namespace
}  // namespace hl::detail
