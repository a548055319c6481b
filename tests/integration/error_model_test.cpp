// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;

class ErrorModel : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    hl::multi_use_sandbox make() { return hl::uninitialized_sandbox::from_file(GetParam()).evolve(); }
};

void expect_poisoned_afterwards(hl::multi_use_sandbox& sb) {
    EXPECT_TRUE(sb.poisoned());
    try {
        sb.call<std::int32_t>("AddLocal", 1, 2);
        FAIL() << "a poisoned sandbox ran a call";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::poisoned) << e.what();
    }
}

TEST_P(ErrorModel, AGuestErrorCarriesCodeAndMessageAndDoesNotPoison) {
    auto sb = make();
    try {
        sb.call<void>("ReturnGuestError", 42, std::string("invalid input"));
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_error);
        EXPECT_NE(std::string(e.what()).find("code 42"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("invalid input"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_P(ErrorModel, AnAbortCarriesCodeAndMessageAndPoisons) {
    auto sb = make();
    try {
        sb.call<void>("Abort", 99, std::string("cannot continue"));
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_aborted);
        EXPECT_NE(std::string(e.what()).find("0x63"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("cannot continue"), std::string::npos) << e.what();
    }
    expect_poisoned_afterwards(sb);
}

TEST_P(ErrorModel, TheErrorCodeOverloadReportsWithoutThrowing) {
    auto sb = make();
    std::error_code ec;
    EXPECT_EQ(sb.call<std::int32_t>(ec, "AddLocal", 2, 2), 4);
    EXPECT_FALSE(ec);
    EXPECT_EQ(sb.call<std::int32_t>(ec, "NoSuchFunction"), 0);
    EXPECT_EQ(ec, errc::unknown_function);
    EXPECT_NE(sb.last_error().find("NoSuchFunction"), std::string::npos) << sb.last_error();
    sb.call<void>(ec, "Abort", 1, std::string("bye"));
    EXPECT_EQ(ec, errc::guest_aborted);
    sb.call<void>(ec, "AddLocal", 1, 1);
    EXPECT_EQ(ec, errc::poisoned);
}

TEST_P(ErrorModel, ARestoreClearsTheLastErrorSoTheNextCallerCannotReadIt) {
    auto sb = make();
    auto clean = sb.snapshot();
    std::error_code ec;
    sb.call<void>(ec, "ReturnGuestError", 7, std::string("text the guest chose"));
    EXPECT_EQ(ec, errc::guest_error);
    EXPECT_NE(sb.last_error().find("text the guest chose"), std::string::npos) << sb.last_error();
    sb.restore(clean);
    EXPECT_EQ(sb.last_error(), "");
}

INSTANTIATE_TEST_SUITE_P(Guests, ErrorModel, ::testing::Values(hl::test::simpleguest(), hl::test::c_simpleguest()),
                         [](const auto& info) { return info.index == 0 ? "cpp" : "c"; });

struct abort_case {
    const char* function;
    const char* must_mention;
};

void PrintTo(const abort_case& c, std::ostream* os) { *os << c.function; }


class CppGuestAborts : public ::testing::TestWithParam<abort_case> {};

TEST_P(CppGuestAborts, AreReportedAsGuestAbortedAndPoison) {
    HL_REQUIRE_KVM();
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    const std::string name = GetParam().function;
    try {
        if (name == "AssertFalse") sb.call<void>(name, 1);
        else if (name == "PureVirtualCall") sb.call<std::int32_t>(name);
        else sb.call<std::int64_t>(name, std::int64_t{1} << 40);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_aborted) << e.what();
        EXPECT_NE(std::string(e.what()).find(GetParam().must_mention), std::string::npos) << e.what();
    }
    expect_poisoned_afterwards(sb);
}

TEST(CppGuestAbort, DeliversTextPrintedBeforeTheAbort) {
    HL_REQUIRE_KVM();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    std::string printed;
    u.set_print_handler([&](std::string_view t) { printed += t; });
    auto sb = std::move(u).evolve();
    EXPECT_THROW(sb.call<void>("PrintThenAbort", std::string("last words")), hl::error);
    EXPECT_EQ(printed, "last words");
}

INSTANTIATE_TEST_SUITE_P(Runtime, CppGuestAborts,
                         ::testing::Values(abort_case{"AssertFalse", "value == 12345"},
                                           abort_case{"PureVirtualCall", "pure virtual"},
                                           abort_case{"AllocateTooMuch", "out of memory"}),
                         [](const auto& info) { return std::string(info.param.function); });

}  // namespace
