// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

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

// A kill reaches the error_code overload by another way than other failures (no exception
// inside): the same code, message and poisoning as the throwing overload's.
TEST_P(ErrorModel, TheErrorCodeOverloadReportsAKillAsTheThrowingOneDoes) {
    auto sb = make();
    const auto handle = sb.interrupt_handle();
    const auto clean = sb.snapshot();
    std::string thrown;
    for (const bool throwing : {true, false}) {
        std::error_code ec;
        std::thread killer([&] {
            while (!handle.running()) std::this_thread::yield();
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            handle.kill();
        });
        if (throwing) {
            try {
                sb.call<void>("Spin");
            } catch (const hl::error& e) {
                ec = e.code();
                thrown = e.what();
            }
        } else {
            sb.call<void>(ec, "Spin");
        }
        killer.join();
        EXPECT_EQ(ec, errc::cancelled) << ec.message();
        if (!throwing) {
            EXPECT_EQ(sb.last_error(), thrown);
        }
        EXPECT_TRUE(sb.poisoned());
        sb.call<void>(ec, "AddLocal", 1, 1);
        EXPECT_EQ(ec, errc::poisoned);
        EXPECT_NE(sb.last_error().find("stopped by a kill"), std::string::npos) << sb.last_error();
        sb.restore(clean);
        EXPECT_EQ(sb.call<std::int32_t>(ec, "AddLocal", 2, 3), 5);
        EXPECT_FALSE(ec) << sb.last_error();
    }
    EXPECT_FALSE(thrown.empty());
}

TEST_P(ErrorModel, AHugeFunctionNameIsShortenedInTheMessage) {
    auto sb = make();
    const std::string name(10 * 1024 * 1024, 'f');
    std::error_code ec;
    sb.call<void>(ec, name);
    EXPECT_EQ(ec, errc::argument_too_large);
    EXPECT_LT(sb.last_error().size(), 1024u);
    EXPECT_NE(sb.last_error().find("... (10485760 bytes)"), std::string::npos) << sb.last_error();
    sb.call<void>(ec, "Abort", 1, std::string("bye"));
    sb.call<void>(ec, name);
    EXPECT_EQ(ec, errc::poisoned);
    EXPECT_LT(sb.last_error().size(), 1024u);
}

// Each failure the tests can provoke, with the code it must have; whether it left the sandbox
// poisoned must be what is_poisoning() says.
TEST(ErrorModelPoisoning, IsPoisoningSaysExactlyWhichFailuresPoisonTheSandbox) {
    HL_REQUIRE_KVM();
    using namespace std::chrono_literals;
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [](std::int32_t, std::int32_t) -> std::int32_t { throw std::runtime_error("no"); });
    u.register_host_function("HostString", [](std::string_view) { return std::string(64 * 1024, 'x'); });
    u.set_print_handler([](std::string_view) { throw std::runtime_error("the terminal is gone"); });
    auto sb = std::move(u).evolve();
    const auto clean = sb.snapshot();
    const auto other = hl::uninitialized_sandbox::from_file(hl::test::c_simpleguest()).evolve().snapshot();

    struct failure {
        const char* what;
        errc expected;
        std::function<void()> provoke;
    };
    const std::vector<failure> failures = {
        {"a guest error", errc::guest_error, [&] { sb.call<void>("ReturnGuestError", 1, std::string("no")); }},
        {"an abort", errc::guest_aborted, [&] { sb.call<void>("Abort", 1, std::string("bye")); }},
        {"a fault", errc::guest_fault, [&] { sb.call<std::int32_t>("ReadNull"); }},
        {"a stack overflow", errc::stack_overflow, [&] { sb.call<std::int32_t>("StackOverflow"); }},
        {"a kill", errc::cancelled,
         [&] {
             sb.interrupt_handle().kill_current_or_next();
             sb.call<void>("Spin");
         }},
        {"a deadline", errc::timed_out, [&] { sb.call_for<void>(1ms, "Spin"); }},
        {"a call after poison", errc::poisoned,
         [&] {
             EXPECT_THROW(sb.call<void>("Abort", 1, std::string("bye")), hl::error);
             sb.call<std::int32_t>("AddLocal", 1, 2);
         }},
        {"an unknown function", errc::unknown_function, [&] { sb.call<void>("NoSuchFunction"); }},
        {"wrong arguments", errc::parameter_mismatch, [&] { sb.call<std::int32_t>("AddLocal", 1); }},
        {"a wrong return type", errc::return_type_mismatch, [&] { sb.call<std::string>("AddLocal", 1, 2); }},
        {"an argument too large", errc::argument_too_large,
         [&] { sb.call<std::string>("Echo", std::string(64 * 1024, 'a')); }},
        {"a result too large", errc::result_too_large, [&] { sb.call<std::string>("StringThroughHost", std::string("a")); }},
        {"a host function that throws", errc::host_function_error, [&] { sb.call<std::int32_t>("Add", 1, 2); }},
        {"a print handler that throws", errc::handler_error,
         [&] { sb.call<std::int32_t>("PrintOutput", std::string("hi\n")); }},
        {"a null snapshot", errc::usage_error, [&] { sb.restore(nullptr); }},
        {"another guest's snapshot", errc::snapshot_mismatch, [&] { sb.restore(other); }},
    };
    for (const auto& f : failures) {
        sb.interrupt_handle().disarm();
        sb.restore(clean);
        std::error_code code;
        try {
            f.provoke();
            ADD_FAILURE() << f.what << " did not fail";
            continue;
        } catch (const hl::error& e) {
            code = e.code();
        }
        EXPECT_EQ(code, f.expected) << f.what << ": " << code.message();
        EXPECT_EQ(sb.poisoned(), hl::is_poisoning(code)) << f.what << ": " << code.message();
    }

    auto hostile = hl::uninitialized_sandbox::from_file(hl::test::hostileguest()).evolve();
    try {
        hostile.call<void>("ResultGarbage");
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::protocol_error) << e.what();
        EXPECT_TRUE(hl::is_poisoning(e.code()));
    }
    EXPECT_TRUE(hostile.poisoned());
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

    sb.call<void>(ec, "ReturnGuestError", 7, std::string("text the guest chose"));
    EXPECT_EQ(sb.call_with_restore<std::int32_t>(clean, "AddLocal", 1, 2), 3);
    EXPECT_EQ(sb.last_error(), "") << "call_with_restore restores too";
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

TEST(CppGuestAbort, VectorAtOutOfRangeReportsTheIndexAndTheSize) {
    HL_REQUIRE_KVM();
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    EXPECT_EQ(sb.call<std::int32_t>("VectorAt", 2), 3);
    try {
        sb.call<std::int32_t>("VectorAt", 5);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_aborted) << e.what();
        EXPECT_NE(std::string(e.what()).find("(which is 5) >= this->size() (which is 3)"), std::string::npos)
            << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(Runtime, CppGuestAborts,
                         ::testing::Values(abort_case{"AssertFalse", "value == 12345"},
                                           abort_case{"PureVirtualCall", "pure virtual"},
                                           abort_case{"AllocateTooMuch", "out of memory"}),
                         [](const auto& info) { return std::string(info.param.function); });

}  // namespace
