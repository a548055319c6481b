// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

class GuestOutput : public ::testing::TestWithParam<const char*> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    hl::multi_use_sandbox make(hl::log_level level = hl::log_level::info) {
        hl::sandbox_config config;
        config.heap_size = 1 << 20;  // room for the long messages the tests format in the guest
        auto u = hl::uninitialized_sandbox::from_file(GetParam(), config);
        u.set_print_handler([this](std::string_view text) {
            printed_ += text;
            chunks_.emplace_back(text);
        });
        u.set_log_handler([this](const hl::log_record& r) { records_.push_back({r.level, std::string(r.message), std::string(r.file), r.line}); });
        u.set_log_level(level);
        return std::move(u).evolve();
    }
    struct record {
        hl::log_level level;
        std::string message, file;
        std::uint32_t line;
    };
    std::string printed_;
    std::vector<std::string> chunks_;
    std::vector<record> records_;
};

TEST_P(GuestOutput, PrintfReachesThePrintHandlerAndReturnsTheCharacterCount) {
    auto sb = make();
    EXPECT_EQ(sb.call<std::int32_t>("PrintOutput", std::string("hello\nworld\n")), 12);
    EXPECT_EQ(printed_, "hello\nworld\n");
}

TEST_P(GuestOutput, IsSentALineAtATimeNotACharacterAtATime) {
    auto sb = make();
    sb.call<std::int32_t>("PrintOutput", std::string("one\ntwo\nthree"));
    ASSERT_EQ(chunks_.size(), 3u);
    EXPECT_EQ(chunks_[0], "one\n");
    EXPECT_EQ(chunks_[1], "two\n");
    EXPECT_EQ(chunks_[2], "three") << "an unfinished line is flushed when the call ends";
}

TEST_P(GuestOutput, SendsALineLongerThanTheBufferInFullBufferChunks) {
    auto sb = make();
    const std::string line(40'000, 'x');
    EXPECT_EQ(sb.call<std::int32_t>("PrintOutput", line.substr(0, 15'000)), 15'000);
    EXPECT_EQ(printed_, line.substr(0, 15'000));
    EXPECT_EQ(chunks_.size(), 1u);
}

TEST_P(GuestOutput, LogRecordsCarryLevelMessageFileAndLine) {
    auto sb = make(hl::log_level::trace);
    sb.call<void>("LogMessage", static_cast<std::int32_t>(hl::log_level::warning), std::string("disk almost full"));
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].level, hl::log_level::warning);
    EXPECT_EQ(records_[0].message, "disk almost full");
    EXPECT_NE(records_[0].file.find("simpleguest"), std::string::npos) << records_[0].file;
    EXPECT_GT(records_[0].line, 0u);
}

TEST_P(GuestOutput, LogRecordsBelowTheLevelNeverLeaveTheGuest) {
    auto sb = make(hl::log_level::error);
    for (int level = 0; level <= 5; ++level) sb.call<void>("LogMessage", level, std::string("m") + std::to_string(level));
    ASSERT_EQ(records_.size(), 2u);
    EXPECT_EQ(records_[0].message, "m4");
    EXPECT_EQ(records_[1].message, "m5");
    sb.set_log_level(hl::log_level::trace);
    sb.call<void>("LogMessage", 0, std::string("now visible"));
    ASSERT_EQ(records_.size(), 3u);
    EXPECT_EQ(records_[2].level, hl::log_level::trace);
}

TEST_P(GuestOutput, DeliversTenMegabytesOfLogsInOneCallWithNothingLost) {
    auto sb = make(hl::log_level::info);
    // 10 MB: 10,240 records of 1 KiB.
    sb.call<void>("LogLots", 10'240, 1024);
    ASSERT_EQ(records_.size(), 10'240u);
    for (const auto& r : records_) ASSERT_EQ(r.message, std::string(1024, 'L'));
}

TEST_P(GuestOutput, DeliversTenMegabytesOfPrintedLinesInOneCallWithNothingLost) {
    auto sb = make();
    sb.call<void>("PrintLots", 10'240, 1023);
    EXPECT_EQ(printed_.size(), 10'240u * 1024);
    std::string line(1023, 'P');
    line += '\n';
    for (std::size_t i = 0; i < printed_.size(); i += line.size()) ASSERT_EQ(printed_.compare(i, line.size(), line), 0) << i;
}

TEST_P(GuestOutput, CutsALogMessageLongerThanTheOutputBufferToFit) {
    auto sb = make();
    sb.call<void>("LogLots", 1, 100'000);
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_GT(records_[0].message.size(), 15'000u);
    EXPECT_LT(records_[0].message.size(), 16'384u);
}

TEST_P(GuestOutput, AThrowingPrintHandlerPoisonsTheSandbox) {
    auto u = hl::uninitialized_sandbox::from_file(GetParam());
    u.set_print_handler([](std::string_view) { throw std::runtime_error("stdout closed"); });
    auto sb = std::move(u).evolve();
    try {
        sb.call<std::int32_t>("PrintOutput", std::string("x\n"));
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), hl::errc::handler_error) << e.what();
        EXPECT_TRUE(hl::is_poisoning(e.code()));
        EXPECT_NE(std::string(e.what()).find("stdout closed"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(sb.poisoned());
}

TEST_P(GuestOutput, InstalledHandlersGetTheGuestsBytesUnchanged) {
    auto sb = make();
    const std::string text = "\x1b[31mred\x1b[0m\r\x7f\xc2\x9b\xff\n";
    sb.call<std::int32_t>("PrintOutput", text);
    EXPECT_EQ(printed_, text);
    sb.call<void>("LogMessage", static_cast<std::int32_t>(hl::log_level::warning), std::string("a\nb\x1b]0;t\x07"));
    ASSERT_EQ(records_.size(), 1u);
    EXPECT_EQ(records_[0].message, "a\nb\x1b]0;t\x07");
}

// The default handlers write to the user's terminal, which guest bytes must not control.
TEST_P(GuestOutput, TheDefaultPrintHandlerEscapesControlCharactersAndKeepsLinesAndTabs) {
    auto sb = hl::uninitialized_sandbox::from_file(GetParam()).evolve();
    ::testing::internal::CaptureStdout();
    sb.call<std::int32_t>("PrintOutput", std::string("ok\tfine\n\x1b]0;pwned\x07\x1b[2J\rline\xc2\x9b" "1m\x7f\n"));
    const std::string out = ::testing::internal::GetCapturedStdout();
    EXPECT_EQ(out, "ok\tfine\n\\x1b]0;pwned\\x07\\x1b[2J\\x0dline\\xc2\\x9b1m\\x7f\n");
}

TEST_P(GuestOutput, TheDefaultLogHandlerWritesEachRecordAsOneLineWithoutEscapes) {
    auto sb = hl::uninitialized_sandbox::from_file(GetParam()).evolve();
    ::testing::internal::CaptureStderr();
    sb.call<void>("LogMessage", static_cast<std::int32_t>(hl::log_level::warning),
                  std::string("disk full\n[guest critical] kernel.c:1: \x1b[31mforged\r"));
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.find('\x1b'), std::string::npos) << err;
    EXPECT_EQ(err.find('\r'), std::string::npos) << err;
    EXPECT_EQ(err.rfind("[guest warning] ", 0), 0u) << err;
    const std::string one_line = ": disk full\\x0a[guest critical] kernel.c:1: \\x1b[31mforged\\x0d\n";
    EXPECT_NE(err.find(one_line), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(Guests, GuestOutput, ::testing::Values(hl::test::simpleguest(), hl::test::c_simpleguest()),
                         [](const auto& info) { return info.index == 0 ? "cpp" : "c"; });

}  // namespace
