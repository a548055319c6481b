// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;

class HostFunctions : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    hl::uninitialized_sandbox load() { return hl::uninitialized_sandbox::from_file(GetParam()); }
};

std::int32_t free_add(std::int32_t a, std::int32_t b) { return a + b; }

TEST_P(HostFunctions, AcceptAFreeFunction) {
    auto u = load();
    u.register_host_function("HostAdd", free_add);
    auto sb = std::move(u).evolve();
    EXPECT_EQ(sb.call<std::int32_t>("Add", 40, 2), 42);
}

TEST_P(HostFunctions, AcceptAStdFunction) {
    auto u = load();
    std::function<std::int32_t(std::int32_t, std::int32_t)> f = [](std::int32_t a, std::int32_t b) { return a * b; };
    u.register_host_function("HostAdd", f);
    auto sb = std::move(u).evolve();
    EXPECT_EQ(sb.call<std::int32_t>("Add", 6, 7), 42);
}

TEST_P(HostFunctions, AcceptAStatefulLambdaAndKeepItsState) {
    auto u = load();
    int calls = 0;
    u.register_host_function("HostAdd", [&calls](std::int32_t a, std::int32_t b) {
        ++calls;
        return a + b;
    });
    auto sb = std::move(u).evolve();
    sb.call<std::int32_t>("Add", 1, 1);
    sb.call<std::int32_t>("Add", 1, 1);
    EXPECT_EQ(calls, 2);
}

TEST_P(HostFunctions, CanBeRegisteredOnAnEvolvedSandbox) {
    auto sb = load().evolve();
    EXPECT_EQ(sb.call<std::string>("HandleHostError", std::string("HostAdd")),
              "handled: the guest called host function 'HostAdd', which the host has not registered");
    sb.register_host_function("HostAdd", free_add);
    EXPECT_EQ(sb.call<std::int32_t>("Add", 2, 3), 5);
    sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a - b; });
    EXPECT_EQ(sb.call<std::int32_t>("Add", 2, 3), -1) << "registering a name again replaces the function";
}

TEST_P(HostFunctions, CanBeCalledTenThousandTimesInOneGuestCall) {
    auto u = load();
    u.register_host_function("HostAdd", free_add);
    auto sb = std::move(u).evolve();
    // sum of (i + 1) for i in [0, 10000)
    EXPECT_EQ(sb.call<std::int64_t>("CallHostManyTimes", 10'000), std::int64_t{10'000} * 10'001 / 2);
}

TEST_P(HostFunctions, AnUnknownHostFunctionIsAnErrorTheGuestCanPassOn) {
    auto sb = load().evolve();
    try {
        sb.call<std::int32_t>("CallHost", std::string("NoSuchHostFunction"), 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::unknown_function) << e.what();
        EXPECT_NE(std::string(e.what()).find("NoSuchHostFunction"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(HostFunctions, AnUnknownHostFunctionIsReportedAsAHostFunctionTheGuestCalled) {
    auto sb = load().evolve();
    try {
        sb.call<std::int32_t>("CallHost", std::string("NoSuchHostFunction"), 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("the guest called host function 'NoSuchHostFunction'"), std::string::npos) << what;
        EXPECT_EQ(what.find("the guest has no function"), std::string::npos) << what;
    }
}

TEST_P(HostFunctions, AHugeUnknownHostFunctionNameIsShortenedInTheMessage) {
    auto sb = load().evolve();
    const std::string name(16000, 'n');
    try {
        sb.call<std::int32_t>("CallHost", name, 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        const std::string what = e.what();
        EXPECT_EQ(e.code(), errc::unknown_function) << what;
        EXPECT_LT(what.size(), 1024u) << what;
        EXPECT_NE(what.find("... (16000 bytes)"), std::string::npos) << what;
        EXPECT_EQ(what.find("output_buffer_size"), std::string::npos) << what;
    }
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(HostFunctions, AnExceptionTextTooLongForTheOutputBufferIsCutToFit) {
    auto u = load();
    u.register_host_function("HostAdd", [](std::int32_t, std::int32_t) -> std::int32_t {
        throw std::runtime_error("the database is down: " + std::string(64 * 1024, 'x'));
    });
    auto sb = std::move(u).evolve();
    try {
        sb.call<std::int32_t>("Add", 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        const std::string what = e.what();
        EXPECT_EQ(e.code(), errc::host_function_error) << what.substr(0, 200);
        EXPECT_NE(what.find("the database is down: xxx"), std::string::npos) << what.substr(0, 200);
        EXPECT_EQ(what.find("output_buffer_size"), std::string::npos) << what.substr(0, 200);
    }
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(HostFunctions, AreCheckedForParameterTypesBeforeBeingCalled) {
    auto u = load();
    bool called = false;
    u.register_host_function("Takes64", [&called](std::int64_t a, std::int64_t b) {
        called = true;
        return static_cast<std::int32_t>(a + b);
    });
    auto sb = std::move(u).evolve();
    try {
        sb.call<std::int32_t>("CallHost", std::string("Takes64"), 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::parameter_mismatch) << e.what();
        EXPECT_NE(std::string(e.what()).find("(int64, int64)"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("(int32, int32)"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(called);
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(HostFunctions, AreCheckedForTheirReturnType) {
    auto u = load();
    u.register_host_function("ReturnsString", [](std::int32_t, std::int32_t) { return std::string("no"); });
    auto sb = std::move(u).evolve();
    try {
        sb.call<std::int32_t>("CallHost", std::string("ReturnsString"), 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::return_type_mismatch) << e.what();
    }
}

TEST_P(HostFunctions, ThatThrowReachTheCallerAsHostFunctionErrorWithTheMessage) {
    auto u = load();
    u.register_host_function("HostAdd", [](std::int32_t, std::int32_t) -> std::int32_t {
        throw std::runtime_error("the database is down");
    });
    auto sb = std::move(u).evolve();
    try {
        sb.call<std::int32_t>("Add", 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::host_function_error) << e.what();
        EXPECT_NE(std::string(e.what()).find("the database is down"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(HostFunctions, ThatThrowCanBeHandledByTheGuest) {
    auto u = load();
    u.register_host_function("Fails", [](std::int32_t, std::int32_t) -> std::int32_t { throw std::runtime_error("nope"); });
    auto sb = std::move(u).evolve();
    EXPECT_EQ(sb.call<std::string>("HandleHostError", std::string("Fails")), "handled: host function 'Fails' failed: nope");
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(HostFunctions, CannotCallBackIntoTheirGuest) {
    auto u = load();
    hl::multi_use_sandbox* self = nullptr;
    u.register_host_function("HostAdd", [&self](std::int32_t a, std::int32_t b) {
        return self->call<std::int32_t>("AddLocal", a, b);
    });
    auto sb = std::move(u).evolve();
    self = &sb;
    try {
        sb.call<std::int32_t>("Add", 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::host_function_error) << e.what();
        EXPECT_NE(std::string(e.what()).find("must not drive their own sandbox"), std::string::npos) << e.what();
    }
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

INSTANTIATE_TEST_SUITE_P(Guests, HostFunctions, ::testing::Values(hl::test::simpleguest(), hl::test::c_simpleguest()),
                         [](const auto& info) { return info.index == 0 ? "cpp" : "c"; });

TEST(HostFunctionTypes, PassEveryKindOfValueBothWays) {
    HL_REQUIRE_KVM();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    int voids = 0;
    u.register_host_function("HostString", [](std::string_view s) { return std::string(s) + "!"; });
    u.register_host_function("HostBytes", [](std::span<const std::uint8_t> b) {
        std::vector<std::uint8_t> v(b.rbegin(), b.rend());
        return v;
    });
    u.register_host_function("HostDouble", [](double d) { return d * 2; });
    u.register_host_function("HostFloat", [](float f) { return -f; });
    u.register_host_function("HostUInt64", [](std::uint64_t x) { return ~x; });
    u.register_host_function("HostBool", [](bool b) { return !b; });
    u.register_host_function("HostVoid", [&voids] { ++voids; });
    auto sb = std::move(u).evolve();
    EXPECT_EQ(sb.call<std::string>("StringThroughHost", std::string("hi")), "hi!");
    EXPECT_EQ(sb.call<std::vector<std::uint8_t>>("BytesThroughHost", std::vector<std::uint8_t>{1, 2, 3}),
              std::vector<std::uint8_t>({3, 2, 1}));
    EXPECT_EQ(sb.call<double>("DoubleThroughHost", 1.25), 2.5);
    EXPECT_EQ(sb.call<float>("FloatThroughHost", 0.0f), -0.0f);
    EXPECT_TRUE(std::signbit(sb.call<float>("FloatThroughHost", 0.0f)));
    EXPECT_EQ(sb.call<std::uint64_t>("UInt64ThroughHost", std::uint64_t{0}), ~std::uint64_t{0});
    EXPECT_TRUE(sb.call<bool>("BoolThroughHost", false));
    sb.call<void>("VoidThroughHost");
    EXPECT_EQ(voids, 1);
}

TEST(HostFunctionTypes, AResultLargerThanTheOutputBufferIsAnError) {
    HL_REQUIRE_KVM();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostString", [](std::string_view) { return std::string(64 * 1024, 'x'); });
    auto sb = std::move(u).evolve();
    try {
        sb.call<std::string>("StringThroughHost", std::string("hi"));
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::result_too_large) << e.what();
        EXPECT_NE(std::string(e.what()).find("output_buffer_size"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sb.poisoned());
}

}  // namespace
