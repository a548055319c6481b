// SPDX-License-Identifier: Apache-2.0
// A guest that leaves an instruction half done inside KVM (`in`, `ins`, `rep ins` on the library's
// ports) must not reach the next task: after restore, the next call runs its own function from the
// snapshot's state, and the sandbox keeps working.
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>

#include "hostile_support.hpp"

namespace {

using hl::errc;

struct half_done_case {
    const char* function;
    std::int64_t count;  // the `rep` count for RepIns*, else unused
};

void PrintTo(const half_done_case& c, std::ostream* os) { *os << c.function << "(" << c.count << ")"; }

using hl::test::expect_clean;

hl::multi_use_sandbox make() { return hl::test::make_hostile(); }

void attack(hl::multi_use_sandbox& sb, const half_done_case& c) {
    const std::string name = c.function;
    std::error_code ec;
    if (name == "InThenForge") {
        sb.call<std::int64_t>(ec, name);
    } else if (name.starts_with("RepIns")) {
        sb.call<void>(ec, name, c.count);
    } else {
        sb.call<void>(ec, name);
    }
    EXPECT_TRUE(ec) << name << " should have failed";
    EXPECT_TRUE(sb.poisoned()) << name << ": " << sb.last_error();
}

class HalfDoneIo : public ::testing::TestWithParam<half_done_case> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_P(HalfDoneIo, IsNeverFinishedInsideTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 3; ++round) {
        attack(sb, GetParam());
        sb.restore(snap);
        expect_clean(sb, 42 + round);
        sb.restore(snap);
    }
}

TEST_P(HalfDoneIo, IsNeverFinishedInsideASandboxCreatedFromALaterSnapshot) {
    auto sb = make();
    auto snap = sb.snapshot();
    attack(sb, GetParam());
    sb.restore(snap);
    auto twin = hl::multi_use_sandbox::from_snapshot(sb.snapshot());
    expect_clean(twin, 7);
    expect_clean(sb, 8);
}

INSTANTIATE_TEST_SUITE_P(Hostile, HalfDoneIo,
                         ::testing::Values(half_done_case{"InThenForge", 0}, half_done_case{"InsOverCanary", 0},
                                           half_done_case{"RepIns", 3}, half_done_case{"RepIns", 1 << 30},
                                           half_done_case{"RepInsBackwards", 1 << 30},
                                           half_done_case{"InsIntoCode", 0}),
                         [](const auto& info) {
                             return std::string(info.param.function) + (info.param.count > 3 ? "Many" : "");
                         });

class StringOut : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(StringOut, ToTheDonePortLeavesNothingForTheNextCall) {
    auto sb = make();
    auto snap = sb.snapshot();
    std::error_code ec;
    sb.call<void>(ec, "OutsDone");  // whatever the host makes of it, the next call is its own
    if (sb.poisoned()) sb.restore(snap);
    EXPECT_EQ(sb.call<std::int64_t>("Identity", std::int64_t{5}), 5);
    sb.restore(snap);
    expect_clean(sb, 6);
}

}  // namespace
