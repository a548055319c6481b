// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

class TypeRoundTrip : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override {
        HL_REQUIRE_KVM();
        sandbox_.emplace(hl::uninitialized_sandbox::from_file(GetParam()).evolve());
    }
    hl::multi_use_sandbox& sb() { return *sandbox_; }
    std::optional<hl::multi_use_sandbox> sandbox_;
};

TEST_P(TypeRoundTrip, PreservesInt32AtItsLimits) {
    for (std::int32_t v : {0, 1, -1, std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max()})
        EXPECT_EQ(sb().call<std::int32_t>("EchoInt32", v), v);
}

TEST_P(TypeRoundTrip, PreservesUInt32AtItsLimits) {
    for (std::uint32_t v : {0u, 1u, 0x8000'0000u, std::numeric_limits<std::uint32_t>::max()})
        EXPECT_EQ(sb().call<std::uint32_t>("EchoUInt32", v), v);
}

TEST_P(TypeRoundTrip, PreservesInt64AtItsLimits) {
    for (std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                           std::numeric_limits<std::int64_t>::max()})
        EXPECT_EQ(sb().call<std::int64_t>("EchoInt64", v), v);
}

TEST_P(TypeRoundTrip, PreservesUInt64AtItsLimits) {
    for (std::uint64_t v : {std::uint64_t{0}, std::uint64_t{1} << 63, std::numeric_limits<std::uint64_t>::max()})
        EXPECT_EQ(sb().call<std::uint64_t>("EchoUInt64", v), v);
}

TEST_P(TypeRoundTrip, PreservesFloatsIncludingSpecialValues) {
    for (float v : {0.0f, -0.0f, 1.5f, -3.25e-20f, std::numeric_limits<float>::max(),
                    std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::infinity()}) {
        const float r = sb().call<float>("EchoFloat", v);
        EXPECT_EQ(r, v);
        EXPECT_EQ(std::signbit(r), std::signbit(v));
    }
    EXPECT_TRUE(std::isnan(sb().call<float>("EchoFloat", std::numeric_limits<float>::quiet_NaN())));
}

TEST_P(TypeRoundTrip, PreservesDoublesIncludingSpecialValues) {
    for (double v : {0.0, -0.0, 3.141592653589793, -1e-300, std::numeric_limits<double>::max(),
                     std::numeric_limits<double>::denorm_min(), -std::numeric_limits<double>::infinity()}) {
        const double r = sb().call<double>("EchoDouble", v);
        EXPECT_EQ(r, v);
        EXPECT_EQ(std::signbit(r), std::signbit(v));
    }
    EXPECT_TRUE(std::isnan(sb().call<double>("EchoDouble", std::numeric_limits<double>::quiet_NaN())));
}

TEST_P(TypeRoundTrip, PreservesBools) {
    EXPECT_TRUE(sb().call<bool>("EchoBool", true));
    EXPECT_FALSE(sb().call<bool>("EchoBool", false));
}

TEST_P(TypeRoundTrip, PreservesEmptyAndBinaryStrings) {
    EXPECT_EQ(sb().call<std::string>("EchoString", std::string()), "");
    const std::string with_nul("a\0b\xff", 4);
    EXPECT_EQ(sb().call<std::string>("EchoString", with_nul), with_nul);
    EXPECT_EQ(sb().call<std::string>("EchoString", "a literal"), "a literal");
    EXPECT_EQ(sb().call<std::string>("EchoString", std::string_view("a view")), "a view");
}

TEST_P(TypeRoundTrip, PreservesEmptyAndFullByteVectors) {
    EXPECT_EQ(sb().call<std::vector<std::uint8_t>>("EchoBytes", std::vector<std::uint8_t>{}), std::vector<std::uint8_t>{});
    std::vector<std::uint8_t> all(256);
    for (int i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
    EXPECT_EQ(sb().call<std::vector<std::uint8_t>>("EchoBytes", all), all);
    EXPECT_EQ(sb().call<std::vector<std::uint8_t>>("EchoBytes", std::span<const std::uint8_t>(all).first(3)),
              std::vector<std::uint8_t>({0, 1, 2}));
}

TEST_P(TypeRoundTrip, PreservesTheLargestStringAndByteVectorThatFitBothBuffers) {
    // 16 KiB buffers: the echo's result must fit the output buffer too; find the largest that does.
    std::size_t largest = 0;
    for (std::size_t n = 16 * 1024 - 200; n < 16 * 1024; ++n) {
        try {
            const std::string s(n, 'x');
            if (sb().call<std::string>("EchoString", s) != s) break;
            largest = n;
        } catch (const hl::error& e) {
            EXPECT_TRUE(e.code() == hl::errc::argument_too_large || e.code() == hl::errc::result_too_large) << e.what();
            break;
        }
    }
    EXPECT_GT(largest, 16u * 1024 - 200);
    const std::vector<std::uint8_t> bytes(largest, 0xab);
    EXPECT_EQ(sb().call<std::vector<std::uint8_t>>("EchoBytes", bytes), bytes);
    EXPECT_FALSE(sb().poisoned());
}

INSTANTIATE_TEST_SUITE_P(Guests, TypeRoundTrip, ::testing::Values(hl::test::simpleguest(), hl::test::c_simpleguest()),
                         [](const auto& info) { return info.index == 0 ? "cpp" : "c"; });

class CppGuest : public ::testing::Test {
protected:
    void SetUp() override {
        HL_REQUIRE_KVM();
        sandbox_.emplace(hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve());
    }
    hl::multi_use_sandbox& sb() { return *sandbox_; }
    std::optional<hl::multi_use_sandbox> sandbox_;
};

TEST_F(CppGuest, PassesOneArgumentOfEveryTypeInOneCall) {
    const std::vector<std::uint8_t> bytes(5);
    EXPECT_EQ(sb().call<std::string>("FormatAll", -1, 2u, std::int64_t{-3}, std::uint64_t{4}, 5.5f, 6.125, true,
                                     std::string("seven"), bytes),
              "-1 2 -3 4 5.50 6.125 true seven 5");
}

TEST_F(CppGuest, PassesThirtyTwoParameters) {
    std::int64_t expected = 0;
    for (int i = 1; i <= 32; ++i) expected += std::int64_t{i} * (i * 3 - 50);
    EXPECT_EQ(sb().call<std::int64_t>("Sum32", -47, -44, -41, -38, -35, -32, -29, -26, -23, -20, -17, -14, -11, -8, -5,
                                      -2, 1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46),
              expected);
}

TEST_F(CppGuest, FreesAndReusesGuestHeapMemory) {
    // 200,000 allocations of up to 2 KiB with at most 64 live: far more than the 128 KiB heap holds
    // unless freed memory is reused.
    EXPECT_GT(sb().call<std::int64_t>("HeapChurn", 200'000), std::int64_t{128} * 1024 * 10);
    EXPECT_EQ(sb().call<std::string>("Echo", std::string("ok")), "ok");
}

}  // namespace
