// SPDX-License-Identifier: Apache-2.0
// The fault classifier on divide errors: a zero divisor, in a register or in memory, and the
// quotients that overflow.
#include "sandbox/fault.hpp"

#include <gtest/gtest.h>

#include <cstdint>

#include "fault_classifier_fixture.hpp"

namespace hl::detail {
namespace {

using namespace hl::detail::test;

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

}  // namespace
}  // namespace hl::detail
