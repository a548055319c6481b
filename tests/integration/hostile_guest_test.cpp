// SPDX-License-Identifier: Apache-2.0
// A guest that breaks the protocol on purpose: every call ends in a clear error, the host process
// survives, and the sandbox is poisoned exactly when the guest's state can no longer be trusted.
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;

struct hostile_case {
    const char* function;
    errc code;
    bool poisons;
    const char* must_mention;
};

void PrintTo(const hostile_case& c, std::ostream* os) { *os << c.function; }


class HostileGuest : public ::testing::TestWithParam<hostile_case> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_P(HostileGuest, GetsAClearErrorAndPoisonsOnlyWhenItMust) {
    const auto& c = GetParam();
    hl::sandbox_config config;
    config.heap_size = 4 << 20;  // HugeAbort builds a 1 MiB message
    auto u = hl::uninitialized_sandbox::from_file(hl::test::hostileguest(), config);
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    auto sb = std::move(u).evolve();
    const std::string name = c.function;
    try {
        if (name == "ReadPort") sb.call<std::int32_t>(name);
        else sb.call<void>(name);
        FAIL() << name << " returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), c.code) << e.what();
        EXPECT_NE(std::string(e.what()).find(c.must_mention), std::string::npos) << e.what();
        EXPECT_LT(std::string(e.what()).size(), 8192u) << "messages stay bounded";
    }
    EXPECT_EQ(sb.poisoned(), c.poisons);
    if (!c.poisons) {
        EXPECT_EQ(sb.call<std::int32_t>("ScribbleThenReturn"), 42);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Protocol, HostileGuest,
    ::testing::Values(hostile_case{"HostCallTooBig", errc::protocol_error, true, "output buffer holds"},
                      hostile_case{"HostCallGarbage", errc::protocol_error, true, "not a valid FunctionCall"},
                      hostile_case{"HostCallOffsetsOutside", errc::protocol_error, true, "not a valid FunctionCall"},
                      hostile_case{"HugeAbort", errc::guest_aborted, true, "AAAA"},
                      hostile_case{"ResultTooBig", errc::protocol_error, true, "output buffer"},
                      hostile_case{"ResultGarbage", errc::protocol_error, true, "not a valid FunctionCallResult"},
                      hostile_case{"UnknownPort", errc::protocol_error, true, "port 0x101"},
                      hostile_case{"UnknownOutputKind", errc::protocol_error, true, "unknown kind 9"},
                      hostile_case{"LogGarbage", errc::protocol_error, true, "LogRecord"},
                      hostile_case{"ReadPort", errc::protocol_error, true, "read from I/O port"},
                      hostile_case{"ForbiddenPort", errc::guest_fault, true, "port 0x80"},
                      hostile_case{"DoneWithFailure", errc::guest_aborted, true, "status 5"}),
    [](const auto& info) { return std::string(info.param.function); });

TEST(HostileGuestCalls, WrongTypesToAHostFunctionComeBackAsAnErrorTheGuestSees) {
    HL_REQUIRE_KVM();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::hostileguest());
    bool called = false;
    u.register_host_function("HostAdd", [&called](std::int32_t a, std::int32_t b) {
        called = true;
        return a + b;
    });
    auto sb = std::move(u).evolve();
    const auto message = sb.call<std::string>("WrongTypesToHost");
    EXPECT_NE(message.find("takes (int32, int32); called with (string, string)"), std::string::npos) << message;
    EXPECT_FALSE(called);
    EXPECT_FALSE(sb.poisoned());
}

TEST(HostileGuestCalls, ScribblingOverTheOutputBufferDoesNotCorruptTheResult) {
    HL_REQUIRE_KVM();
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::hostileguest()).evolve();
    for (int i = 0; i < 100; ++i) ASSERT_EQ(sb.call<std::int32_t>("ScribbleThenReturn"), 42);
}

}  // namespace
