// SPDX-License-Identifier: Apache-2.0
#include "util/escape_controls.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace hl::util {
namespace {

std::string printed(std::string_view s) { return escape_controls(s, line_breaks::keep); }
std::string logged(std::string_view s) { return escape_controls(s, line_breaks::escape); }

TEST(EscapeControls, CopiesPrintableAsciiTabsAndWellFormedUtf8Unchanged) {
    const std::string text = "plain text, 100% \\ \"quoted\" ~\tcaf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd";
    EXPECT_EQ(printed(text), text);
    EXPECT_EQ(logged(text), text);
    EXPECT_EQ(printed(""), "");
}

TEST(EscapeControls, KeepsNewlinesInPrintedTextAndEscapesThemInLogRecords) {
    EXPECT_EQ(printed("one\ntwo\n"), "one\ntwo\n");
    EXPECT_EQ(logged("one\n[guest error] forged.c:1: two"), "one\\x0a[guest error] forged.c:1: two");
}

TEST(EscapeControls, EscapesEveryOtherC0ControlAndDel) {
    for (int c = 0; c < 0x20; ++c) {
        if (c == '\t' || c == '\n') continue;
        const std::string in(1, static_cast<char>(c));
        char expected[8];
        std::snprintf(expected, sizeof expected, "\\x%02x", c);
        EXPECT_EQ(printed(in), expected) << c;
        EXPECT_EQ(logged(in), expected) << c;
    }
    EXPECT_EQ(printed("\x7f"), "\\x7f");
    EXPECT_EQ(printed("a\rb"), "a\\x0db") << "a carriage return could overwrite what the line showed";
}

TEST(EscapeControls, LeavesNoTerminalEscapeSequenceIntact) {
    EXPECT_EQ(printed("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
    EXPECT_EQ(printed("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
    EXPECT_EQ(printed("\x1b]8;;http://x\x1b\\link"), "\\x1b]8;;http://x\\x1b\\link");
}

TEST(EscapeControls, EscapesC1ControlsInTheirUtf8Form) {
    EXPECT_EQ(printed("\xc2\x9b" "31m"), "\\xc2\\x9b31m");  // U+009B, CSI
    EXPECT_EQ(printed("\xc2\x9d" "0;t\xc2\x9c"), "\\xc2\\x9d0;t\\xc2\\x9c");  // OSC ... ST
    EXPECT_EQ(printed("\xc2\x80\xc2\x9f\xc2\xa0"), "\\xc2\\x80\\xc2\\x9f\xc2\xa0") << "U+00A0 is printable";
}

TEST(EscapeControls, EscapesEachByteThatIsNotWellFormedUtf8) {
    EXPECT_EQ(printed("\x9b" "31m"), "\\x9b31m") << "a raw 8-bit CSI";
    EXPECT_EQ(printed("\xc0\x80"), "\\xc0\\x80") << "overlong NUL";
    EXPECT_EQ(printed("\xe0\x80\xaf"), "\\xe0\\x80\\xaf") << "overlong '/'";
    EXPECT_EQ(printed("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a surrogate";
    EXPECT_EQ(printed("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80") << "past U+10FFFF";
    EXPECT_EQ(printed("\xff\xfe"), "\\xff\\xfe");
    EXPECT_EQ(printed("ab\xe2\x82"), "ab\\xe2\\x82") << "cut off at the end";
    EXPECT_EQ(printed("\xe2\x1b[2J"), "\\xe2\\x1b[2J") << "a lead byte cannot swallow the ESC after it";
}

}  // namespace
}  // namespace hl::util
