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

std::vector<unsigned char> random_bytes(std::mt19937& random, size_t n) {
    std::vector<unsigned char> bytes(n);
    for (auto& b : bytes) b = static_cast<unsigned char>(random());
    return bytes;
}

TEST(GuestString, CopiesAndFillsLikeGlibcAtAllSizesAndAlignments) {
    std::mt19937 random(1);
    for (size_t n : {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 63, 64, 100, 255, 256, 257, 300, 1000, 4097}) {
        for (size_t src_off = 0; src_off < 8; src_off++) {
            for (size_t dst_off = 0; dst_off < 8; dst_off += 3) {
                auto src = random_bytes(random, n + 16);
                auto want = random_bytes(random, n + 16), got = want;
                std::memcpy(want.data() + dst_off, src.data() + src_off, n);
                EXPECT_EQ(hl_memcpy(got.data() + dst_off, src.data() + src_off, n), got.data() + dst_off);
                ASSERT_EQ(want, got) << "memcpy " << n;
                std::memset(want.data() + dst_off, 0xa5, n);
                EXPECT_EQ(hl_memset(got.data() + dst_off, 0x1a5, n), got.data() + dst_off);
                ASSERT_EQ(want, got) << "memset " << n;
                for (size_t shift : {1, 3, 8, 13}) {
                    auto w = random_bytes(random, n + 32), g = w;
                    std::memmove(w.data() + src_off + shift, w.data() + src_off, n);
                    hl_memmove(g.data() + src_off + shift, g.data() + src_off, n);
                    ASSERT_EQ(w, g) << "memmove up " << n;
                    std::memmove(w.data() + src_off, w.data() + src_off + shift, n);
                    hl_memmove(g.data() + src_off, g.data() + src_off + shift, n);
                    ASSERT_EQ(w, g) << "memmove down " << n;
                }
            }
        }
    }
}

int sign(int x) { return (x > 0) - (x < 0); }

TEST(GuestString, ComparesWithTheSameSignAsGlibc) {
    std::mt19937 random(2);
    for (size_t n = 0; n < 80; n++) {
        for (size_t at = 0; at <= n; at++) {
            auto a = random_bytes(random, n + 1);
            for (auto& c : a) c = c ? c : 1;
            a[n] = 0;
            auto b = a;
            if (at < n) b[at] = static_cast<unsigned char>(random() % 255 + 1);
            auto *x = reinterpret_cast<const char*>(a.data()), *y = reinterpret_cast<const char*>(b.data());
            ASSERT_EQ(sign(std::memcmp(x, y, n)), sign(hl_memcmp(x, y, n)));
            ASSERT_EQ(sign(std::strcmp(x, y)), sign(hl_strcmp(x, y)));
            ASSERT_EQ(sign(std::strncmp(x, y, at)), sign(hl_strncmp(x, y, at)));
            ASSERT_EQ(sign(std::strncmp(x, y, n + 5)), sign(hl_strncmp(x, y, n + 5)));
        }
    }
    EXPECT_LT(hl_strcmp("abc", "abcd"), 0);
    EXPECT_GT(hl_strcmp("\xff", "a"), 0);
    EXPECT_EQ(hl_strncmp("abcX", "abcY", 3), 0);
}

TEST(GuestString, SearchesLikeGlibcAtAllAlignments) {
    alignas(16) char text[] = "the quick brown fox jumps over the lazy dog; the end";
    for (size_t off = 0; off < 16; off++) {
        const char* s = text + off;
        ASSERT_EQ(std::strlen(s), hl_strlen(s));
        for (size_t max : {0, 1, 5, 100}) ASSERT_EQ(strnlen(s, max), hl_strnlen(s, max));
        for (int c : {int{'t'}, int{'e'}, int{'z'}, int{';'}, int{'Q'}, 0, 0x100 + 'o'}) {
            ASSERT_EQ(std::strchr(s, c), hl_strchr(s, c)) << c;
            ASSERT_EQ(std::strrchr(s, c), hl_strrchr(s, c)) << c;
            ASSERT_EQ(std::memchr(s, c, std::strlen(s)), hl_memchr(s, c, std::strlen(s))) << c;
        }
        for (const char* needle : {"", "the", "the end", "dog;", "fox jumps", "lazy cat", "d", "endx"})
            ASSERT_EQ(std::strstr(s, needle), hl_strstr(s, needle)) << needle;
    }
}

TEST(GuestString, NeverReadsPastThePageHoldingTheTerminator) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* mapping = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mapping, MAP_FAILED);
    auto* base = static_cast<char*>(mapping);
    ASSERT_EQ(mprotect(base + page, page, PROT_NONE), 0);
    std::memset(base, 'a', page);
    for (size_t len = 0; len < 40; len++) {
        char* s = base + page - 1 - len;
        s[len] = '\0';
        EXPECT_EQ(hl_strlen(s), len);
        EXPECT_EQ(hl_strnlen(s, SIZE_MAX), len);
        EXPECT_EQ(hl_memchr(s, 0, SIZE_MAX), s + len);
        EXPECT_EQ(hl_strchr(s, 'z'), nullptr);
        EXPECT_EQ(hl_strchr(s, 0), s + len);
        EXPECT_EQ(hl_strrchr(s, 'a'), len ? s + len - 1 : nullptr);
        EXPECT_EQ(hl_strcmp(s, s), 0);
        s[len] = 'a';
    }
    munmap(mapping, 2 * page);
}

TEST(GuestString, CopiesAndConcatenatesStringsLikeGlibc) {
    char want[64], got[64];
    for (size_t n : {0, 1, 3, 5, 6, 10, 20}) {
        std::memset(want, 'x', sizeof want);
        std::memset(got, 'x', sizeof got);
        std::strncpy(want, "hello", n);
        hl_strncpy(got, "hello", n);
        ASSERT_EQ(0, std::memcmp(want, got, sizeof want)) << "strncpy " << n;
        std::strcpy(want, "ab");
        hl_strcpy(got, "ab");
        std::strncat(want, "cdef", n);
        hl_strncat(got, "cdef", n);
        ASSERT_EQ(0, std::memcmp(want, got, sizeof want)) << "strncat " << n;
        std::strcat(want, "!");
        hl_strcat(got, "!");
        ASSERT_STREQ(want, got);
    }
}

struct StrtolCase {
    const char* text;
    int base;
};

TEST(GuestStdlib, StrtolFamilyMatchesGlibcIncludingErrnoAndEndPointer) {
    const char* texts[] = {"0",
                           "42",
                           "  -17xyz",
                           "+8",
                           "\t\n 123",
                           "0x1f",
                           "0X1F",
                           "0x",
                           "0xg",
                           "-0x10",
                           "077",
                           "08",
                           "z",
                           "ZZ",
                           "",
                           "   ",
                           "-",
                           "+-1",
                           "9223372036854775807",
                           "9223372036854775808",
                           "-9223372036854775808",
                           "-9223372036854775809",
                           "18446744073709551615",
                           "18446744073709551616",
                           "-18446744073709551615",
                           "-18446744073709551616",
                           "99999999999999999999999",
                           "1010",
                           "0b101",
                           "7fffffffffffffff",
                           "  +0x"};
    for (const char* text : texts) {
        for (int base : {0, 2, 8, 10, 16, 36, 1, 37, -1}) {
            char *want_end, *got_end;
            errno = 0;
            long want = std::strtol(text, &want_end, base);
            int want_errno = errno;
            errno = 0;
            long got = hl_strtol(text, &got_end, base);
            ASSERT_EQ(want, got) << text << " base " << base;
            ASSERT_EQ(want_errno, errno) << text << " base " << base;
            if (base != 1 && base != 37 && base != -1) {
                ASSERT_EQ(want_end, got_end) << text << " base " << base;
            }
            errno = 0;
            unsigned long long uwant = std::strtoull(text, &want_end, base);
            want_errno = errno;
            errno = 0;
            ASSERT_EQ(uwant, hl_strtoull(text, &got_end, base)) << text << " base " << base;
            ASSERT_EQ(want_errno, errno) << text << " base " << base;
            errno = 0;
            ASSERT_EQ(std::strtoul(text, nullptr, base), hl_strtoul(text, nullptr, base));
            ASSERT_EQ(std::strtoll(text, nullptr, base), hl_strtoll(text, nullptr, base));
        }
        ASSERT_EQ(std::atoi(text), hl_atoi(text)) << text;
        ASSERT_EQ(std::atol(text), hl_atol(text)) << text;
    }
}

TEST(GuestStdlib, AbsMatchesGlibc) {
    for (int v : {0, 1, -1, INT_MAX, -INT_MAX}) EXPECT_EQ(std::abs(v), hl_abs(v));
    EXPECT_EQ(hl_labs(LONG_MIN + 1), LONG_MAX);
    EXPECT_EQ(hl_llabs(-5LL), 5LL);
    EXPECT_EQ(hl_abs(INT_MIN), INT_MIN);
}

template <size_t N>
struct Record {
    int key;
    unsigned char payload[N];
};

template <size_t N>
void check_qsort(std::mt19937& random, size_t count) {
    std::vector<Record<N>> records(count);
    for (auto& r : records) {
        r.key = static_cast<int>(random() % (count + 1)) - static_cast<int>(count / 2);
        std::memset(r.payload, r.key & 0xff, N);
    }
    auto want = records;
    std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    hl_qsort(records.data(), count, sizeof(Record<N>), [](const void* a, const void* b) {
        int x = static_cast<const Record<N>*>(a)->key, y = static_cast<const Record<N>*>(b)->key;
        return (x > y) - (x < y);
    });
    for (size_t i = 0; i < count; i++) {
        ASSERT_EQ(want[i].key, records[i].key) << "count " << count << " width " << sizeof(Record<N>);
        ASSERT_EQ(records[i].payload[N - 1], static_cast<unsigned char>(records[i].key & 0xff));
    }
}

TEST(GuestStdlib, QsortSortsLikeStdSortForManySizesAndElementWidths) {
    std::mt19937 random(5);
    for (size_t count : {0, 1, 2, 3, 10, 100, 1000, 20000}) {
        check_qsort<1>(random, count);
        check_qsort<4>(random, count);
        check_qsort<13>(random, count);
    }
    std::vector<char> bytes(300);
    for (auto& b : bytes) b = static_cast<char>(random());
    auto want = bytes;
    std::sort(want.begin(), want.end());
    hl_qsort(bytes.data(), bytes.size(), 1,
             [](const void* a, const void* b) { return *static_cast<const char*>(a) - *static_cast<const char*>(b); });
    EXPECT_EQ(want, bytes);
}

TEST(GuestStdlib, BsearchFindsEveryElementAndRejectsAbsentKeys) {
    auto compare = [](const void* a, const void* b) {
        int x = *static_cast<const int*>(a), y = *static_cast<const int*>(b);
        return (x > y) - (x < y);
    };
    for (int count = 0; count < 40; count++) {
        std::vector<int> v(static_cast<size_t>(count));
        for (int i = 0; i < count; i++) v[static_cast<size_t>(i)] = 2 * i;
        for (int key = -1; key <= 2 * count; key++) {
            auto* found = static_cast<int*>(hl_bsearch(&key, v.data(), v.size(), sizeof(int), compare));
            if (key % 2 == 0 && key >= 0 && key < 2 * count)
                ASSERT_TRUE(found && *found == key) << key;
            else
                ASSERT_EQ(found, nullptr) << key;
        }
    }
}

TEST(GuestCtype, ClassifiersAndCaseMappingMatchGlibcInTheCLocale) {
    for (int c = -128; c < 256; c++) {
        ASSERT_EQ(!!std::isalnum(c), !!hl_isalnum(c)) << c;
        ASSERT_EQ(!!std::isalpha(c), !!hl_isalpha(c)) << c;
        ASSERT_EQ(!!std::isblank(c), !!hl_isblank(c)) << c;
        ASSERT_EQ(!!std::iscntrl(c), !!hl_iscntrl(c)) << c;
        ASSERT_EQ(!!std::isdigit(c), !!hl_isdigit(c)) << c;
        ASSERT_EQ(!!std::isgraph(c), !!hl_isgraph(c)) << c;
        ASSERT_EQ(!!std::islower(c), !!hl_islower(c)) << c;
        ASSERT_EQ(!!std::isprint(c), !!hl_isprint(c)) << c;
        ASSERT_EQ(!!std::ispunct(c), !!hl_ispunct(c)) << c;
        ASSERT_EQ(!!std::isspace(c), !!hl_isspace(c)) << c;
        ASSERT_EQ(!!std::isupper(c), !!hl_isupper(c)) << c;
        ASSERT_EQ(!!std::isxdigit(c), !!hl_isxdigit(c)) << c;
        ASSERT_EQ(std::tolower(c), hl_tolower(c)) << c;
        ASSERT_EQ(std::toupper(c), hl_toupper(c)) << c;
    }
    EXPECT_EQ(hl_tolower(1000), 1000);
    EXPECT_EQ(hl_isdigit(1000), 0);
}

TEST(GuestCtype, TablesMatchGlibcSoItsMacrosWorkInGuests) {
    for (int c = -128; c < 256; c++) {
        ASSERT_EQ((*__ctype_b_loc())[c], (*hl_ctype_b_loc())[c]) << c;
        ASSERT_EQ((*__ctype_tolower_loc())[c], (*hl_ctype_tolower_loc())[c]) << c;
        ASSERT_EQ((*__ctype_toupper_loc())[c], (*hl_ctype_toupper_loc())[c]) << c;
    }
}

}  // namespace
