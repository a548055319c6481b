// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hl_libc.h"

namespace {

struct Formatted {
    int result;
    std::string text;
    bool operator==(const Formatted&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Formatted& f) { return os << f.result << " \"" << f.text << '"'; }

Formatted formatted(int result, const char* buf, size_t size) {
    size_t len = result < 0 ? 0 : std::min(static_cast<size_t>(result), size ? size - 1 : 0);
    return {result, std::string(buf, len)};
}

// glibc 2.36 prints printf("%#g", 999999.5) as "1.e+06": when rounding carries into a new power of ten
// it drops the zeros that '#' must keep. We print the standard "1.00000e+06" and skip such comparisons.
bool glibc_drops_alternate_g_zeros(const std::string& format, const std::string& glibc_output) {
    if (format.find_first_of("gG") == std::string::npos || format.find('#') == std::string::npos) return false;
    size_t dot = format.find('.');
    int precision = dot == std::string::npos ? 6 : std::atoi(format.c_str() + dot + 1);
    return precision > 1 &&
           (glibc_output.find("1.e") != std::string::npos || glibc_output.find("1.E") != std::string::npos);
}

template <typename... Args>
void expect_same(const char* format, Args... args) {
    static char want[8192], got[8192];
    // The format is the test's input, not a literal: glibc's snprintf is the reference for the SDK's.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-security"
    int w = std::snprintf(want, sizeof want, format, args...);
#pragma GCC diagnostic pop
    int g = hl_snprintf(got, sizeof got, format, args...);
    if (glibc_drops_alternate_g_zeros(format, want)) {
        auto without_zeros_and_padding = [](std::string s) {
            std::erase_if(s, [](char c) { return c == '0' || c == ' '; });
            return s;
        };
        ASSERT_EQ(without_zeros_and_padding(want), without_zeros_and_padding(got)) << "format: " << format;
        return;
    }
    ASSERT_EQ(formatted(w, want, sizeof want), formatted(g, got, sizeof got)) << "format: " << format;
}

// Every combination of the five flags, in a fixed order.
std::vector<std::string> flag_sets() {
    std::vector<std::string> sets;
    for (int mask = 0; mask < 32; mask++) {
        std::string flags;
        for (int bit = 0; bit < 5; bit++)
            if (mask & (1 << bit)) flags += "-+ #0"[bit];
        sets.push_back(flags);
    }
    return sets;
}

std::vector<std::string> specs(const std::vector<std::string>& widths, const std::vector<std::string>& precisions,
                               const std::string& length, const std::string& conversions) {
    std::vector<std::string> out;
    for (const auto& flags : flag_sets())
        for (const auto& width : widths)
            for (const auto& precision : precisions)
                for (char c : conversions) out.push_back("[%" + flags + width + precision + length + c + "]");
    return out;
}

TEST(GuestPrintf, MatchesGlibcForEveryFlagWidthAndPrecisionOfIntConversions) {
    const int values[] = {0, 1, -1, 7, 42, -42, 255, 256, 65535, 123456789, INT_MAX, INT_MIN, INT_MIN + 1};
    for (const auto& format : specs({"", "1", "6", "25"}, {"", ".", ".0", ".1", ".4", ".30"}, "", "diouxX"))
        for (int v : values) expect_same(format.c_str(), v);
}

TEST(GuestPrintf, MatchesGlibcForLengthModifiersAtTheirLimits) {
    const auto widths = std::vector<std::string>{"", "3", "22"};
    const auto precisions = std::vector<std::string>{"", ".0", ".20"};
    for (const auto& format : specs(widths, precisions, "hh", "diouxX"))
        for (int v : {0, 1, -1, 127, 128, 255, 256, 300, -129, INT_MIN}) expect_same(format.c_str(), v);
    for (const auto& format : specs(widths, precisions, "h", "diouxX"))
        for (int v : {0, -1, 32767, 32768, 65535, 70000, INT_MAX}) expect_same(format.c_str(), v);
    for (const char* length : {"l", "ll", "j"})
        for (const auto& format : specs(widths, precisions, length, "diouxX"))
            for (long long v : {0LL, -1LL, LLONG_MAX, LLONG_MIN, 4294967296LL, -4294967297LL})
                expect_same(format.c_str(), v);
    for (const char* length : {"z", "t"})
        for (const auto& format : specs(widths, precisions, length, "diouxX"))
            for (size_t v : {size_t{0}, size_t{1}, SIZE_MAX, SIZE_MAX / 2, SIZE_MAX / 2 + 1})
                expect_same(format.c_str(), v);
}

TEST(GuestPrintf, MatchesGlibcForStringsCharactersAndPointers) {
    const char* strings[] = {"", "a", "hello", "a longer string of text", nullptr};
    for (const auto& format : specs({"", "1", "8", "30"}, {"", ".", ".0", ".3", ".5", ".6", ".40"}, "", "s"))
        for (const char* s : strings) expect_same(format.c_str(), s);
    for (const auto& format : specs({"", "1", "5"}, {""}, "", "c"))
        for (int c : {int{'x'}, int{' '}, int{'%'}, 255}) expect_same(format.c_str(), c);
    for (const auto& format : specs({"", "5", "20"}, {"", ".0", ".3", ".5", ".18"}, "", "p"))
        for (uintptr_t p : {uintptr_t{0}, uintptr_t{1}, uintptr_t{0xdeadbeef}, UINTPTR_MAX})
            expect_same(format.c_str(), reinterpret_cast<void*>(p));
    expect_same("100%% %5%|%-5%|");
    expect_same("%ls|%5lc|%-4ls|%.2ls", L"wide", L'w', L"ab", L"abc");
    expect_same("unknown %y and %5k stay literal");
}

const double kInterestingDoubles[] = {0.0,
                                      -0.0,
                                      1.0,
                                      -1.0,
                                      0.1,
                                      0.5,
                                      1.5,
                                      2.5,
                                      -2.5,
                                      0.125,
                                      0.375,
                                      3.14159,
                                      2.0 / 3,
                                      1.0 / 3,
                                      9.5,
                                      0.95,
                                      0.995,
                                      999.9995,
                                      99.5,
                                      0.05,
                                      0.15,
                                      0.25,
                                      0.35,
                                      1e15,
                                      1e16,
                                      1e17,
                                      1e20,
                                      1e21,
                                      1e22,
                                      1e23,
                                      9007199254740993.0,
                                      18446744073709551616.0,
                                      123456789.125,
                                      0.000123456,
                                      0.00001,
                                      0.0001,
                                      9.9999999,
                                      99999.95,
                                      999999.5,
                                      6.02214076e23,
                                      1.602176634e-19,
                                      1e300,
                                      -1e300,
                                      1e-300,
                                      1e-310,
                                      DBL_MAX,
                                      -DBL_MAX,
                                      DBL_MIN,
                                      DBL_TRUE_MIN,
                                      DBL_EPSILON,
                                      5e-324,
                                      1e100,
                                      1e-100,
                                      0.1 + 0.2,
                                      HUGE_VAL,
                                      -HUGE_VAL,
                                      NAN,
                                      -NAN};

TEST(GuestPrintf, MatchesGlibcForFloatingPointConversions) {
    auto precisions = std::vector<std::string>{"", ".", ".0", ".1", ".3", ".6", ".10", ".17", ".25", ".60"};
    for (const auto& format : specs({"", "1", "14", "40"}, precisions, "", "fFeEgGaA"))
        for (double v : kInterestingDoubles) expect_same(format.c_str(), v);
}

TEST(GuestPrintf, KeepsTheZerosOfAlternateGWhereGlibcDropsThem) {
    char buf[64];
    hl_snprintf(buf, sizeof buf, "%#g|%#.3G|%#.1g|%#g", 999999.5, 999.9995, 9.5, 1e6);
    EXPECT_STREQ(buf, "1.00000e+06|1.00E+03|1.e+01|1.00000e+06");
}

TEST(GuestPrintf, PrintsTheExactValueOfExtremeDoubles) {
    for (const char* format : {"%.1100f", "%.800e", "%.800g", "%.1074f", "%f", "%.0f", "%.767e"})
        for (double v : {DBL_TRUE_MIN, DBL_MIN, DBL_MAX, 0.1, 1e300, std::nextafter(DBL_MIN, 0.0)})
            expect_same(format, v);
}

TEST(GuestPrintf, RoundsExactTiesToEvenLikeGlibc) {
    for (double v : {0.5, 1.5, 2.5, 3.5, -0.5, -1.5, 0.125, 0.375, 1e22 + 0.0, 4503599627370497.0})
        for (const char* format : {"%.0f", "%.1f", "%.2f", "%.0e", "%.1e", "%.2e", "%.1g", "%.2g", "%.15e"})
            expect_same(format, v);
    expect_same("%.0f %.0f %.0f %.1f %.2f", 0.5, 1.5, 2.5, 0.25, 0.125);
}

TEST(GuestPrintf, MatchesGlibcForRandomDoublesAndFormats) {
    std::mt19937_64 random(20240611);
    const std::string conversions = "fFeEgGaA";
    const auto flags = flag_sets();
    for (int i = 0; i < 6000; i++) {
        double v;
        if (i % 3 != 2) {
            uint64_t bits = random();
            if (i % 3 == 1) bits &= ~(uint64_t{0x7fc} << 52);
            std::memcpy(&v, &bits, sizeof v);
        } else {
            v = std::ldexp(static_cast<double>(random() >> 11), static_cast<int>(random() % 160) - 120);
        }
        std::string format = "%" + flags[random() % flags.size()];
        if (random() % 2) format += std::to_string(random() % 40);
        if (random() % 4) format += "." + std::to_string(random() % (random() % 8 ? 30 : 400));
        format += conversions[random() % conversions.size()];
        expect_same(format.c_str(), v);
    }
}

TEST(GuestPrintf, MatchesGlibcForRandomIntegersAndFormats) {
    std::mt19937_64 random(7);
    const std::string conversions = "diouxX";
    const auto flags = flag_sets();
    for (int i = 0; i < 4000; i++) {
        long long v = static_cast<long long>(random() >> (random() % 64));
        if (random() % 2) v = -v;
        std::string format = "%" + flags[random() % flags.size()];
        if (random() % 2) format += std::to_string(random() % 30);
        if (random() % 2) format += "." + std::to_string(random() % 30);
        format += "ll";
        format += conversions[random() % conversions.size()];
        expect_same(format.c_str(), v);
    }
}

TEST(GuestPrintf, MatchesGlibcForLongDoubles) {
    const long double values[] = {0.0L,
                                  -0.0L,
                                  1.0L,
                                  0.1L,
                                  -3.3L,
                                  1e300L,
                                  1e-300L,
                                  15.5L,
                                  15.97L,
                                  LDBL_EPSILON,
                                  static_cast<long double>(DBL_MAX),
                                  123456789012345678.0L,
                                  INFINITY,
                                  NAN};
    for (const auto& format : specs({"", "12"}, {"", ".0", ".3", ".20"}, "L", "fFeEgGaA"))
        for (long double v : values) expect_same(format.c_str(), v);
    expect_same("%Lf %Le %Lg", 1e308L, 1e-320L, 0x1p-1074L);
}

TEST(GuestPrintf, TruncatesAndAlwaysTerminatesWhileReturningTheFullLength) {
    const char* format = "%s=%08.3f|%-6d|%#x";
    const std::string full = "value=0003.142|-42   |0xff";
    for (size_t size = 0; size <= full.size() + 2; size++) {
        char buf[64];
        std::memset(buf, '@', sizeof buf);
        int n = hl_snprintf(buf, size, format, "value", 3.14159, -42, 255);
        ASSERT_EQ(n, static_cast<int>(full.size()));
        if (size) {
            EXPECT_EQ(std::string(buf), full.substr(0, size - 1));
        }
        EXPECT_EQ(buf[size], '@') << "wrote past the buffer of size " << size;
    }
    EXPECT_EQ(hl_snprintf(nullptr, 0, "%1000d", 5), 1000);
}

TEST(GuestPrintf, FailsLikeGlibcWhenTheOutputCannotBeCounted) {
    EXPECT_EQ(hl_snprintf(nullptr, 0, "%2147483648d", 1), -1);
    EXPECT_EQ(hl_snprintf(nullptr, 0, "%2147483647d%d", 1, 2), -1);
    EXPECT_EQ(hl_snprintf(nullptr, 0, "%*d", INT_MIN, 1), -1);
    EXPECT_EQ(hl_snprintf(nullptr, 0, "trailing %"), -1);
    EXPECT_EQ(hl_snprintf(nullptr, 0, "%lc", 0x141), -1);
    EXPECT_EQ(hl_snprintf(nullptr, 0, "%2147483647d", 1), INT_MAX);
}

TEST(GuestPrintf, SprintfWritesWithoutABound) {
    char buf[4096];
    EXPECT_EQ(hl_sprintf(buf, "%s-%05d-%.2e", "id", 42, 12345.678), 17);
    EXPECT_STREQ(buf, "id-00042-1.23e+04");
    EXPECT_EQ(hl_sprintf(buf, "%2000d", 1), 2000);
    EXPECT_EQ(std::strlen(buf), 2000u);
}

}  // namespace
