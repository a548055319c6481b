// SPDX-License-Identifier: Apache-2.0
// The guest's printed text and log records: the handlers, their defaults and their failures.
#include "sandbox/host_services.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "host_services_support.hpp"
#include "sandbox/poisoning.hpp"

namespace hl::detail {
namespace {

using HostServices = test::host_services_test;

// Runs `f`, which must poison with `code`; returns the reason.
template <class F>
std::string poison_reason(F f, errc code) {
    try {
        f();
    } catch (const poisoning& p) {
        EXPECT_EQ(p.failure(), code) << p.reason();
        return p.reason();
    }
    ADD_FAILURE() << "no poisoning";
    return {};
}

TEST_F(HostServices, GivesThePrintHandlerTheGuestsBytesUnchanged) {
    std::string got;
    services.set_print_handler([&](std::string_view text) { got = text; });
    guest_prints("hello\x1b[2J");
    services.deliver_output(buffers, HL_OUTPUT_PRINT);
    EXPECT_EQ(got, "hello\x1b[2J");
}

TEST_F(HostServices, ThePrintDefaultPrintsNoEscapeSequenceAndComesBackForAnEmptyHandler) {
    std::string got;
    services.set_print_handler([&](std::string_view text) { got = text; });
    services.set_print_handler({});
    guest_prints("hi\x1b[2J");
    ::testing::internal::CaptureStdout();
    services.deliver_output(buffers, HL_OUTPUT_PRINT);
    const std::string printed = ::testing::internal::GetCapturedStdout();
    EXPECT_TRUE(got.empty()) << "the replaced handler ran";
    EXPECT_EQ(printed.find('\x1b'), std::string::npos) << printed;
    EXPECT_NE(printed.find("hi"), std::string::npos) << printed;
}

TEST_F(HostServices, GivesTheLogHandlerRecordsAtOrAboveTheLevelAndDropsTheOthers) {
    std::vector<std::string> got;
    services.set_log_handler([&](const log_record& r) { got.push_back(std::string(r.message) + "@" + std::string(r.file)); });
    services.set_level(log_level::warning);
    guest_logs(fb::LogLevel::Info, "chatter", "g.c", 1);
    services.deliver_output(buffers, HL_OUTPUT_LOG);
    guest_logs(fb::LogLevel::Error, "broken", "g.c", 2);
    services.deliver_output(buffers, HL_OUTPUT_LOG);
    EXPECT_EQ(got, std::vector<std::string>{"broken@g.c"});
}

TEST_F(HostServices, TheLogDefaultWritesOneLinePerRecordOnStderr) {
    guest_logs(fb::LogLevel::Warning, "two\nlines", "g.c", 7);
    ::testing::internal::CaptureStderr();
    services.deliver_output(buffers, HL_OUTPUT_LOG);
    const std::string written = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(written.find("[guest warning] g.c:7: two"), 0u) << written;
    EXPECT_EQ(written.find('\n'), written.size() - 1) << "a guest's newline starts no line: " << written;
}

TEST_F(HostServices, PoisonsOnALogRecordThatIsNotOne) {
    guest_prints("not a log record");
    const auto reason = poison_reason([&] { services.deliver_output(buffers, HL_OUTPUT_LOG); }, errc::protocol_error);
    EXPECT_NE(reason.find("bad log record from the guest"), std::string::npos) << reason;
}

TEST_F(HostServices, PoisonsOnOutputOfAnUnknownKind) {
    guest_prints("text");
    const auto reason = poison_reason([&] { services.deliver_output(buffers, 77); }, errc::protocol_error);
    EXPECT_NE(reason.find("output of unknown kind 77"), std::string::npos) << reason;
}

TEST_F(HostServices, PoisonsWhenAHandlerThrowsAndLeavesTheCallback) {
    services.set_print_handler([](std::string_view) { throw std::runtime_error("terminal gone"); });
    services.set_log_handler([](const log_record&) { throw 1; });
    guest_prints("x");
    auto reason = poison_reason([&] { services.deliver_output(buffers, HL_OUTPUT_PRINT); }, errc::handler_error);
    EXPECT_NE(reason.find("the print handler failed: terminal gone"), std::string::npos) << reason;
    EXPECT_FALSE(services.in_callback());
    guest_logs(fb::LogLevel::Critical, "m", "f", 1);
    reason = poison_reason([&] { services.deliver_output(buffers, HL_OUTPUT_LOG); }, errc::handler_error);
    EXPECT_NE(reason.find("the log handler threw"), std::string::npos) << reason;
    EXPECT_FALSE(services.in_callback());
}

TEST_F(HostServices, AHandlerThatReplacesItselfFinishesItsOwnCall) {
    std::vector<std::string> got;
    const std::string tag = "first:";
    services.set_print_handler([&, tag](std::string_view text) {
        services.set_print_handler([&](std::string_view t) { got.push_back("second:" + std::string(t)); });
        got.push_back(tag + std::string(text));  // a capture of the handler being replaced
    });
    guest_prints("a");
    services.deliver_output(buffers, HL_OUTPUT_PRINT);
    services.deliver_output(buffers, HL_OUTPUT_PRINT);
    EXPECT_EQ(got, (std::vector<std::string>{"first:a", "second:a"}));
}

TEST_F(HostServices, ANestedCallbackLeavesTheOuterOneInsideWhenItEnds) {
    bool in_handler = false, after_handler = false;
    services.set_print_handler([&](std::string_view) { in_handler = services.in_callback(); });
    services.register_function("Outer", make_host_function([&] {
                                   services.deliver_output(buffers, HL_OUTPUT_PRINT);
                                   after_handler = services.in_callback();
                               }));
    guest_calls("Outer", value_type::void_type);
    EXPECT_FALSE(services.serve(buffers, call));
    EXPECT_TRUE(in_handler);
    EXPECT_TRUE(after_handler) << "the inner scope put back the outer one's state";
    EXPECT_FALSE(services.in_callback());
}

}  // namespace
}  // namespace hl::detail
