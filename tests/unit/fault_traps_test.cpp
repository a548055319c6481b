// SPDX-License-Identifier: Apache-2.0
// The fault classifier on what only a hostile guest does on purpose: traps, I/O to ports the guest
// may use, system and hypervisor calls, alignment checks, undecodable instructions, FS/GS bases.
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

TEST_F(FaultClassifier, NamesASystemCallThatEnteredLstar) {
    guest.write(entry, {0x0f, 0x05});
    cpu.rip = vmm::syscall_entry;
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

// A call through a null pointer just after a libc system call wrapper returned: RCX still follows
// that syscall. LSTAR is not at 0, so this is the page fault it is, never a system call.
TEST_F(FaultClassifier, KeepsANullCallAfterASyscallWrapperAPageFault) {
    guest.write(entry, {0x0f, 0x05});
    cpu.rip = 0;
    cpu.rcx = entry + 2;
    EXPECT_EQ(classify().kind, "page fault (execute)");
    EXPECT_FALSE(trapped_system_call(guest.context(cpu)));
}

TEST_F(FaultClassifier, TellsATrappedSystemCallByItsTwoPossibleStates) {
    guest.write(entry, {0x0f, 0x05});
    // PVM: at LSTAR with RCX after the syscall.
    cpu.rip = vmm::syscall_entry;
    cpu.rcx = entry + 2;
    cpu.r11 = 0x246;
    auto site = trapped_system_call(guest.context(cpu));
    ASSERT_TRUE(site);
    EXPECT_EQ(site->return_rip, entry + 2);
    EXPECT_EQ(site->saved_rflags, 0x246u);
    // Hardware KVM, EFER.SCE clear: #UD at the syscall, no page fault recorded.
    cpu.rip = entry;
    cpu.rflags = 0x202;
    site = trapped_system_call(guest.context(cpu));
    ASSERT_TRUE(site);
    EXPECT_EQ(site->return_rip, entry + 2);
    // A fetch fault at those bytes (CR2 set) is not one; nor is LSTAR with RCX after other bytes.
    cpu.cr2 = entry;
    EXPECT_FALSE(trapped_system_call(guest.context(cpu)));
    cpu.cr2 = 0;
    cpu.rip = vmm::syscall_entry;
    cpu.rcx = entry + 1;
    EXPECT_FALSE(trapped_system_call(guest.context(cpu)));
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
