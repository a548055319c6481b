// SPDX-License-Identifier: Apache-2.0
#include "hl/hl.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "guest_paths.hpp"

namespace {

using hl::errc;

// Every test here runs against both the C++ and the C test guest.
class BothGuests : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    hl::multi_use_sandbox make(const hl::sandbox_config& config = {}) {
        auto u = hl::uninitialized_sandbox::from_file(GetParam(), config);
        u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
        return std::move(u).evolve();
    }
};

using hl::test::error_of;

TEST_P(BothGuests, EchoesAString) {
    auto sb = make();
    EXPECT_EQ(sb.call<std::string>("Echo", std::string("hello, guest")), "hello, guest");
}

TEST_P(BothGuests, AddsTwoNumbers) {
    auto sb = make();
    EXPECT_EQ(sb.call<std::int32_t>("Add", 40, 2), 42);
    EXPECT_EQ(sb.call<std::int32_t>("Add", -7, 7), 0);
}

TEST_P(BothGuests, KeepsStateBetweenCalls) {
    auto sb = make();
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 2);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 3);
}

TEST_P(BothGuests, ReportsAnUnknownFunctionAndStaysUsable) {
    auto sb = make();
    try {
        sb.call<std::string>("NoSuchFunction", std::string("x"));
        FAIL() << "expected an error";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::unknown_function);
        EXPECT_NE(std::string(e.what()).find("NoSuchFunction"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::int32_t>("Add", 1, 2), 3);
}

TEST_P(BothGuests, ReportsAWrongArgumentCountAndStaysUsable) {
    auto sb = make();
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("Add", 1); }), errc::parameter_mismatch);
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("Add", 1, 2, 3); }), errc::parameter_mismatch);
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::int32_t>("Add", 1, 2), 3);
}

TEST_P(BothGuests, ReportsWrongArgumentTypesWithBothSignatures) {
    auto sb = make();
    try {
        sb.call<std::int32_t>("Add", 1, std::string("two"));
        FAIL() << "expected an error";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::parameter_mismatch);
        EXPECT_NE(std::string(e.what()).find("(int32, int32)"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("(int32, string)"), std::string::npos) << e.what();
    }
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("Add", std::int64_t{1}, std::int64_t{2}); }),
              errc::parameter_mismatch);
    EXPECT_EQ(sb.call<std::int32_t>("Add", 2, 2), 4);
}

TEST_P(BothGuests, ReportsAWrongReturnTypeAndStaysUsable) {
    auto sb = make();
    EXPECT_EQ(error_of([&] { sb.call<std::string>("Add", 1, 2); }), errc::return_type_mismatch);
    EXPECT_EQ(error_of([&] { sb.call<void>("Echo", std::string("x")); }), errc::return_type_mismatch);
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::int32_t>("Add", 1, 2), 3);
}

TEST_P(BothGuests, RejectsAnArgumentLargerThanTheInputBufferAndStaysUsable) {
    auto sb = make();
    const std::vector<std::uint8_t> big(16 * 1024, 7);
    try {
        sb.call<void>("LargeParameters", big, std::string());
        FAIL() << "expected an error";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::argument_too_large);
        EXPECT_NE(std::string(e.what()).find("input_buffer_size"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::string>("Echo", std::string("still here")), "still here");
}

TEST_P(BothGuests, AcceptsAnArgumentAtTheInputBufferLimitAndRejectsOneByteMore) {
    auto sb = make();
    // The largest byte vector whose serialized call fits: found by trying, since FlatBuffers adds a
    // few bytes of framing and padding around it.
    std::size_t fits = 0;
    for (std::size_t n = 16 * 1024 - 256; n < 16 * 1024; ++n) {
        const std::vector<std::uint8_t> v(n, 1);
        if (error_of([&] { sb.call<void>("LargeParameters", v, std::string()); }) != errc{}) break;
        fits = n;
    }
    ASSERT_GT(fits, 16u * 1024 - 256);
    const std::vector<std::uint8_t> over(fits + 1, 1);
    EXPECT_EQ(error_of([&] { sb.call<void>("LargeParameters", over, std::string()); }), errc::argument_too_large);
    EXPECT_FALSE(sb.poisoned());
}

TEST_P(BothGuests, RunsTenThousandConsecutiveCalls) {
    auto sb = make();
    for (int i = 0; i < 10'000; ++i) {
        ASSERT_EQ(sb.call<std::int32_t>("Add", i, 1), i + 1);
    }
    EXPECT_EQ(sb.call<std::string>("Echo", std::string("done")), "done");
}

TEST_P(BothGuests, ReturnsEightKilobytesFromTwentyFourIn) {
    hl::sandbox_config config;
    config.input_buffer_size = 25 * 1024;
    auto sb = make(config);
    std::vector<std::uint8_t> input(24 * 1024);
    for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<std::uint8_t>(i * 7);
    const auto out = sb.call<std::vector<std::uint8_t>>("24K_in_8K_out", input);
    ASSERT_EQ(out.size(), 8u * 1024);
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], input[i]) << i;
}

TEST_P(BothGuests, WorksWithLargeHeaps) {
    for (std::uint64_t mib : {8, 64, 256}) {
        hl::sandbox_config config;
        config.heap_size = mib << 20;
        auto sb = make(config);
        EXPECT_EQ(sb.call<std::string>("Echo", std::string("big")), "big") << mib << " MiB";
    }
}

INSTANTIATE_TEST_SUITE_P(Guests, BothGuests, ::testing::Values(hl::test::simpleguest(), hl::test::c_simpleguest()),
                         [](const auto& info) { return info.index == 0 ? "cpp" : "c"; });

}  // namespace
