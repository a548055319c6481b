// SPDX-License-Identifier: Apache-2.0
// Attacks through the ports: every `in` form on every library port, and string `in` that runs into
// memory the guest cannot write or into the library's own pages. Neither may forge or steer the next
// task; the expectation is the snapshot's state.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "hostile_support.hpp"

namespace {

using hl::test::expect_clean;

hl::multi_use_sandbox make() { return hl::test::make_hostile(); }

using Attack = hl::test::attack_test;

// ---- Every `in` form on every library port ----

struct port_case {
    std::int64_t port, width;
};
class InPort : public Attack, public ::testing::WithParamInterface<port_case> {};

TEST_P(InPort, NeitherForgesNorSteersTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 2; ++round) {
        std::error_code ec;
        const auto forged = sb.call<std::int64_t>(ec, "InPort", GetParam().port, GetParam().width);
        EXPECT_TRUE(ec) << "in from port " << GetParam().port << " returned " << forged;
        EXPECT_TRUE(sb.poisoned());
        sb.restore(snap);
        expect_clean(sb, 5 + round);
        sb.restore(snap);
    }
}

std::vector<port_case> every_port_and_width() {
    std::vector<port_case> cases;
    for (std::int64_t port = 0xf8; port <= 0x117; ++port) {
        for (const std::int64_t width : {1, 2, 4}) cases.push_back({port, width});
    }
    return cases;
}

INSTANTIATE_TEST_SUITE_P(Hostile, InPort, ::testing::ValuesIn(every_port_and_width()), [](const auto& info) {
    char name[32];
    std::snprintf(name, sizeof name, "port%llx_%lld", static_cast<unsigned long long>(info.param.port),
                  static_cast<long long>(info.param.width));
    return std::string(name);
});

// ---- String `in` that runs into memory it cannot write ----

struct string_in_case {
    const char* function;
    std::int64_t width;
};
class StringInto : public Attack, public ::testing::WithParamInterface<string_in_case> {};

TEST_P(StringInto, UnwritableMemoryLeavesNothingForTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    if (std::string(GetParam().function) == "RepInsDownIntoReadOnly") {
        ASSERT_NE(sb.call<std::int64_t>("FirstWritablePage"), 0);
        sb.restore(snap);
    }
    for (std::int64_t round = 0; round < 3; ++round) {
        std::error_code ec;
        sb.call<void>(ec, GetParam().function, GetParam().width);
        EXPECT_TRUE(ec);
        EXPECT_TRUE(sb.poisoned());
        sb.restore(snap);
        expect_clean(sb, 11 + round);
        sb.restore(snap);
    }
    auto twin = hl::multi_use_sandbox::from_snapshot(snap);
    expect_clean(twin, 3);
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, StringInto,
    ::testing::Values(string_in_case{"RepInsIntoStackGuard", 1}, string_in_case{"RepInsIntoStackGuard", 2},
                      string_in_case{"RepInsIntoStackGuard", 4}, string_in_case{"RepInsOffHeapEnd", 1},
                      string_in_case{"RepInsOffHeapEnd", 2}, string_in_case{"RepInsOffHeapEnd", 4},
                      string_in_case{"RepInsDownIntoReadOnly", 1}, string_in_case{"RepInsDownIntoReadOnly", 2},
                      string_in_case{"RepInsDownIntoReadOnly", 4}),
    [](const auto& info) { return std::string(info.param.function) + std::to_string(info.param.width); });

// ---- String `in` aimed at the library's own pages ----

// GDT 0x1000, TSS 0x2000 (its I/O map base at +0x66), PEB 0x3000, entry stub 0x4000, register image
// 0x5000, page tables from 0x6000: fixed by mem::layout. One element, and a run of 1 MiB that would
// sweep from the GDT through the page tables.
TEST_F(Attack, StringInIntoTheLibrarysOwnPagesNeverReachesTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto peb = sb.call<std::int64_t>("PebChecksum");
    const auto input = sb.call<std::int64_t>("InputAddr");
    sb.restore(snap);
    for (const std::int64_t target : {std::int64_t{0x1000}, std::int64_t{0x1ffc}, std::int64_t{0x2000},
                                      std::int64_t{0x2064}, std::int64_t{0x3000}, std::int64_t{0x4000},
                                      std::int64_t{0x5000}, std::int64_t{0x6000}, input}) {
        for (const std::int64_t count : {std::int64_t{1}, std::int64_t{1} << 18}) {
            std::error_code ec;
            sb.call<void>(ec, "RepInsTo", target, count);
            EXPECT_TRUE(ec) << std::hex << target;
            sb.restore(snap);
            EXPECT_EQ(sb.call<std::int64_t>("PebChecksum"), peb) << std::hex << target;
            expect_clean(sb, target);
            // Every port other than the library's must still be refused (the TSS bitmap is intact).
            std::error_code ec2;
            sb.call<std::int64_t>(ec2, "InPort", std::int64_t{0x80}, std::int64_t{1});
            EXPECT_NE(sb.last_error().find("not permitted"), std::string::npos) << std::hex << target << ": "
                                                                               << sb.last_error();
            sb.restore(snap);
        }
    }
}

}  // namespace
