// SPDX-License-Identifier: Apache-2.0
#include "mem/guest_memory.hpp"

#include <gtest/gtest.h>

#include <array>
#include <span>
#include <type_traits>
#include <cstdint>
#include <vector>

#include "hl/error.hpp"

namespace hl::mem {
namespace {

constexpr std::uint64_t pages = 16;

std::vector<std::uint64_t> written_pages(const guest_memory& m) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t p = 0; p < m.pages(); ++p) {
        if (m.host_written().test(p)) out.push_back(p);
    }
    return out;
}

TEST(GuestMemory, ReadingThroughAMutableObjectMarksNoPage) {
    auto m = guest_memory::create(pages * page_size);
    const auto view = m.span(gpa{page_size}, 3 * page_size);
    EXPECT_EQ(view.size(), 3 * page_size);
    EXPECT_EQ(m.read<std::uint64_t>(gpa{5 * page_size}), 0u);
    EXPECT_EQ(m.span(gpa{0}, m.size()).size(), m.size());
    EXPECT_FALSE(m.host_written().any());
    EXPECT_TRUE(m.host_written_words().empty());
}

TEST(GuestMemory, ReadOnlyViewsCannotBeWrittenThrough) {
    // A compile-time property: a read on a non-const object still yields const bytes.
    auto m = guest_memory::create(pages * page_size);
    static_assert(std::is_same_v<decltype(m.span(gpa{0}, 1)), std::span<const std::byte>>);
    static_assert(std::is_same_v<decltype(m.writable(gpa{0}, 1)), std::span<std::byte>>);
}

TEST(GuestMemory, WritesMarkExactlyThePagesTheyTouch) {
    auto m = guest_memory::create(pages * page_size);
    m.writable(gpa{2 * page_size - 1}, 2)[0] = std::byte{1};  // straddles pages 1 and 2
    m.write(gpa{7 * page_size + 8}, std::uint32_t{0xdeadbeef});
    const std::array<std::byte, 3> bytes{std::byte{4}, std::byte{5}, std::byte{6}};
    m.write_bytes(gpa{10 * page_size}, bytes);
    m.write_bytes(gpa{12 * page_size}, {});
    m.writable(gpa{13 * page_size}, 0);
    EXPECT_EQ(written_pages(m), (std::vector<std::uint64_t>{1, 2, 7, 10}));
    EXPECT_EQ(m.read<std::uint32_t>(gpa{7 * page_size + 8}), 0xdeadbeefu);
    EXPECT_EQ(m.span(gpa{10 * page_size + 2}, 1)[0], std::byte{6});
    EXPECT_EQ(m.span(gpa{2 * page_size - 1}, 1)[0], std::byte{1});

    m.clear_host_written();
    EXPECT_FALSE(m.host_written().any());
    EXPECT_TRUE(m.host_written_words().empty());
}

TEST(GuestMemory, RestoreCopiesAndZeroingMarkNothing) {
    auto m = guest_memory::create(pages * page_size);
    std::vector<std::byte> source(m.size(), std::byte{9});
    m.copy_pages_from(3, 2, source.data());
    EXPECT_EQ(m.read<std::uint8_t>(gpa{4 * page_size}), 9);
    m.zero_pages(3, 1);
    EXPECT_EQ(m.read<std::uint8_t>(gpa{3 * page_size}), 0);
    EXPECT_FALSE(m.host_written().any());
}

TEST(GuestMemory, RefusesEveryAccessOutsideItsBytesWithoutMarking) {
    auto m = guest_memory::create(pages * page_size);
    const auto refused = [](auto&& f) {
        try {
            f();
        } catch (const hl::error& e) {
            return e.code() == make_error_code(errc::protocol_error);
        }
        return false;
    };
    EXPECT_TRUE(refused([&] { m.span(gpa{m.size()}, 1); }));
    EXPECT_TRUE(refused([&] { m.span(gpa{8}, ~std::uint64_t{0}); }));
    EXPECT_TRUE(refused([&] { m.writable(gpa{m.size() - 4}, 8); }));
    EXPECT_TRUE(refused([&] { m.write(gpa{~std::uint64_t{0} - 2}, std::uint64_t{1}); }));
    EXPECT_TRUE(refused([&] { m.read<std::uint64_t>(gpa{m.size() - 7}); }));
    EXPECT_NO_THROW(m.span(gpa{m.size()}, 0));
    EXPECT_FALSE(m.host_written().any());
}

}  // namespace
}  // namespace hl::mem
