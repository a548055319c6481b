// SPDX-License-Identifier: Apache-2.0
// The fault classifier on memory, opcode, privilege, port and stack faults.
#include "sandbox/fault.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fault_classifier_fixture.hpp"

namespace hl::detail {
namespace {

using namespace hl::detail::test;

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

}  // namespace
}  // namespace hl::detail
