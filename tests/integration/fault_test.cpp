// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;

struct fault_case {
    const char* function;
    errc code;
    const char* must_mention;  // a word the message has to contain
};

void PrintTo(const fault_case& c, std::ostream* os) { *os << c.function; }


class GuestFault : public ::testing::TestWithParam<std::tuple<const char*, fault_case>> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_P(GuestFault, IsReportedByNameAndPoisonsTheSandbox) {
    const auto& [guest, c] = GetParam();
    auto sb = hl::uninitialized_sandbox::from_file(guest).evolve();
    ASSERT_EQ(sb.call<std::int32_t>("AddLocal", 1, 1), 2);
    try {
        if (std::string(c.function) == "DivideByZero") {
            sb.call<std::int32_t>(c.function, 1, 0);
        } else {
            sb.call_dynamic(c.function, std::string(c.function) == "ReadNull" ? hl::value_type::int32
                                        : std::string(c.function) == "StackOverflow" ? hl::value_type::int32
                                                                                      : hl::value_type::void_type,
                            {});
        }
        FAIL() << c.function << " returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), c.code) << e.what();
        EXPECT_NE(std::string(e.what()).find(c.must_mention), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("rip 0x"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(sb.poisoned());
    try {
        sb.call<std::int32_t>("AddLocal", 1, 1);
        FAIL() << "a poisoned sandbox ran a call";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::poisoned) << e.what();
    }
}

const fault_case cases[] = {
    {"ReadNull", errc::guest_fault, "null page"},
    {"WriteNull", errc::guest_fault, "writing 0x0"},
    {"InvalidOpcode", errc::guest_fault, "invalid opcode"},
    {"DivideByZero", errc::guest_fault, "divide error"},
    {"StackOverflow", errc::stack_overflow, "stack"},
    {"WriteToCode", errc::guest_fault, "guest code"},
};

INSTANTIATE_TEST_SUITE_P(Faults, GuestFault,
                         ::testing::Combine(::testing::Values(hl::test::simpleguest(), hl::test::c_simpleguest()),
                                            ::testing::ValuesIn(cases)),
                         [](const auto& info) {
                             return std::string(std::get<0>(info.param) == hl::test::simpleguest() ? "cpp_" : "c_") +
                                    std::get<1>(info.param).function;
                         });

TEST(GuestFaultCpp, ExecutingHeapMemoryIsAPageFaultOnExecute) {
    HL_REQUIRE_KVM();
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    try {
        sb.call<void>("ExecuteHeap");
        FAIL() << "ExecuteHeap returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_fault) << e.what();
        EXPECT_NE(std::string(e.what()).find("heap"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(sb.poisoned());
}

// A hostile guest's CPU exception, named for what really happened (traps report RIP after the
// instruction, syscall lands at LSTAR, ...), never for the innocent instruction at RIP.
struct hostile_fault {
    const char* function;
    hl::value_type returns;
    std::vector<const char*> must_mention;
    std::vector<const char*> must_not_mention;
};

void PrintTo(const hostile_fault& c, std::ostream* os) { *os << c.function; }

/// What calling `function` on a fresh hostile guest threw, or nullopt if it returned; the sandbox
/// must be poisoned after a throw.
std::optional<hl::error> fault_of(const char* function, hl::value_type returns) {
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::hostileguest()).evolve();
    try {
        sb.call_dynamic(function, returns, {});
    } catch (const hl::error& e) {
        EXPECT_TRUE(sb.poisoned()) << e.what();
        return e;
    }
    return std::nullopt;
}

class HostileFault : public ::testing::TestWithParam<hostile_fault> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_P(HostileFault, IsNamedForWhatTheGuestDid) {
    const hostile_fault& c = GetParam();
    const auto e = fault_of(c.function, c.returns);
    ASSERT_TRUE(e) << c.function << " returned";
    EXPECT_EQ(e->code(), errc::guest_fault) << e->what();
    const std::string message = e->what();
    EXPECT_NE(message.find("rip 0x"), std::string::npos) << message;
    for (const char* part : c.must_mention) EXPECT_NE(message.find(part), std::string::npos) << part << ": " << message;
    for (const char* part : c.must_not_mention)
        EXPECT_EQ(message.find(part), std::string::npos) << part << ": " << message;
}

const hostile_fault hostile_faults[] = {
    {"Breakpoint", hl::value_type::void_type, {"breakpoint at rip 0x", ": int3 (", "stopped after it"},
     {"general protection"}},
    {"BreakpointBeforeAllowedOut", hl::value_type::void_type, {"breakpoint at rip 0x", ": int3 ("}, {"not permitted"}},
    {"BreakpointLongForm", hl::value_type::void_type, {"breakpoint at rip 0x", ": int 3 ("}, {"general protection"}},
    // PVM reports icebp at the instruction, hardware after it: either way it is named.
    {"Icebp", hl::value_type::void_type, {"debug trap at rip 0x", ": int1 ("}, {"interrupt handlers"}},
    {"SingleStep", hl::value_type::void_type, {"single-step trap before rip 0x", "RFLAGS.TF"}, {"general protection"}},
    {"StepIntoUd2", hl::value_type::void_type, {"invalid opcode at rip 0x", ": ud2"}, {"single-step"}},
    {"SingleStepOntoAllowedOut", hl::value_type::void_type, {"single-step trap", "out dx, eax, which has not run"},
     {"not permitted"}},
    // PVM enters LSTAR (0); hardware KVM raises #UD at the syscall.
    {"SystemCall", hl::value_type::int64, {"system call", ": syscall ("}, {"null page"}},
    {"Sysenter", hl::value_type::void_type, {"system call", ": sysenter ("}, {}},
    {"OutsFromUnmapped", hl::value_type::void_type, {"page fault reading 0x7f0000000000", "rep outsb"},
     {"not permitted"}},
};

INSTANTIATE_TEST_SUITE_P(Hostile, HostileFault, ::testing::ValuesIn(hostile_faults),
                         [](const auto& info) { return std::string(info.param.function); });

TEST(HostileFaultOnSomeCpus, AMisalignedLoadWithRflagsAcIsAnAlignmentCheckWhenTheCpuRaisesIt) {
    HL_REQUIRE_KVM();
    // Hardware KVM runs the guest with CR0.AM clear (no #AC); PVM runs it under the host's CR0.AM.
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::hostileguest()).evolve();
    try {
        EXPECT_EQ(sb.call<std::int64_t>("MisalignedWithAc"), 0x0908070605040302);
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_fault) << e.what();
        EXPECT_NE(std::string(e.what()).find("alignment check at rip 0x"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("the guest set RFLAGS.AC, and the 8-byte access at"), std::string::npos)
            << e.what();
    }
}

TEST(HostileFaultOnSomeCpus, AnInstructionTheDisassemblerDoesNotKnowIsSaidToBeUndecodable) {
    HL_REQUIRE_KVM();
    // Neither movdir64b nor AMX runs on this project's machines; a CPU that runs one returns.
    const std::pair<const char*, const char*> cases[] = {{"Movdir64b", "66 0f 38 f8 06"},
                                                         {"Ldtilecfg", "c4 e2 78 49 00"}};
    for (auto [function, bytes] : cases) {
        SCOPED_TRACE(function);
        const auto e = fault_of(function, hl::value_type::void_type);
        if (!e) continue;
        EXPECT_EQ(e->code(), errc::guest_fault) << e->what();
        EXPECT_NE(std::string(e->what()).find(std::string("could not be decoded: bytes ") + bytes), std::string::npos)
            << e->what();
        EXPECT_EQ(std::string(e->what()).find("invalid opcode"), std::string::npos) << e->what();
    }
}

// KVM answers a hypercall from CPL3 with -KVM_EPERM, or the CPU faults: never more. Which one
// depends on the host (PVM hosts have answered vmcall both ways, on different days).
void expect_hypercall_refused(const char* function, const char* mnemonic) {
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::hostileguest()).evolve();
    try {
        EXPECT_LT(sb.call<std::int64_t>(function), 0);
        EXPECT_EQ(sb.call<std::int32_t>("ScribbleThenReturn"), 42);
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_fault) << e.what();
        const std::string message = e.what();
        EXPECT_NE(message.find("hypervisor call at rip 0x"), std::string::npos) << message;
        EXPECT_NE(message.find(std::string(": ") + mnemonic + " ("), std::string::npos) << message;
        EXPECT_EQ(message.find("privileged"), std::string::npos) << message;
        EXPECT_TRUE(sb.poisoned());
    }
}

TEST(HostileFaultOnSomeCpus, VmcallIsRefusedWithoutHarmingTheHost) {
    HL_REQUIRE_KVM();
    expect_hypercall_refused("Vmcall", "vmcall");
}

TEST(HostileFaultOnSomeCpus, VmmcallIsRefusedWithoutHarmingTheHost) {
    HL_REQUIRE_KVM();
    expect_hypercall_refused("Vmmcall", "vmmcall");
}

TEST(HostileFaultOnSomeCpus, AFaultThroughTheFsBaseNamesTheLinearAddress) {
    HL_REQUIRE_KVM();
    const auto e = fault_of("ReadThroughFsBase", hl::value_type::int64);
    ASSERT_TRUE(e) << "ReadThroughFsBase returned";
    if (std::string(e->what()).find("wrfsbase") != std::string::npos) GTEST_SKIP() << "wrfsbase faults here";
    EXPECT_EQ(e->code(), errc::guest_fault) << e->what();
    EXPECT_NE(std::string(e->what()).find("page fault reading 0x7f0000000010"), std::string::npos) << e->what();
    EXPECT_EQ(std::string(e->what()).find("null page"), std::string::npos) << e->what();
}

TEST(HostileFaultOnSomeCpus, AFaultThroughTheGsBaseNamesTheLinearAddress) {
    HL_REQUIRE_KVM();
    const auto e = fault_of("WriteThroughGsBase", hl::value_type::int64);
    ASSERT_TRUE(e) << "WriteThroughGsBase returned";
    if (std::string(e->what()).find("wrgsbase") != std::string::npos) GTEST_SKIP() << "wrgsbase faults here";
    EXPECT_EQ(e->code(), errc::guest_fault) << e->what();
    EXPECT_NE(std::string(e->what()).find("page fault writing 0x7f0000100020"), std::string::npos) << e->what();
}

}  // namespace
