// SPDX-License-Identifier: Apache-2.0
#include "loader/elf_image.hpp"

#include "hl/error.hpp"
#include "mem/guest_memory.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "elf_guest_builder.hpp"

namespace hl::loader {
namespace {

using namespace hl::loader::test;

TEST(ElfImage, ParsesASynthesizedStaticPieGuest) {
    const auto image = guest_builder{}.parse();
    EXPECT_EQ(image.image_size(), image_end);
    EXPECT_EQ(image.entry_offset(), 0x1000u);
    EXPECT_EQ(image.relocation_count(), 2u);
}

TEST(ElfImage, TakesSegmentPermissionsFromTheProgramHeadersAndMakesRelroReadOnly) {
    const auto image = guest_builder{}.parse();
    const std::vector<segment> expected{
        {0x0000, 0x1000, access::read},
        {0x1000, 0x1000, access::read | access::execute},
        {0x2000, 0x1000, access::read},
        {0x3000, 0x1000, access::read},
        {0x4000, 0x2000, access::read | access::write},
    };
    EXPECT_TRUE(std::ranges::equal(image.segments(), expected));
}

TEST(ElfImage, RoundsThePartialLastRelroPageDownLikeGlibc) {
    guest_builder b;
    b.phdrs[ph_relro].p_vaddr = b.phdrs[ph_relro].p_offset = 0x3ef0;
    b.phdrs[ph_relro].p_memsz = 0x1010;  // ends at 0x4f00: the page at 0x4000 stays writable
    const auto image = b.parse();
    const auto segments = image.segments();
    ASSERT_EQ(segments.size(), 5u);
    EXPECT_EQ(segments[3], (segment{0x3000, 0x1000, access::read}));
    EXPECT_EQ(segments[4], (segment{0x4000, 0x2000, access::read | access::write}));
}

TEST(ElfImage, LoadCopiesFileBytesAndZeroFillsBssAndGaps) {
    const guest_builder b;
    const auto file = b.build();
    const auto image = elf_image::parse(file);
    std::vector<std::byte> dest(image.image_size(), std::byte{0xaa});
    image.load(dest, 0x100000);

    const auto copied = [&](std::uint64_t begin, std::uint64_t end) {
        return std::equal(dest.begin() + begin, dest.begin() + end, file.begin() + begin);
    };
    const auto zero = [&](std::uint64_t begin, std::uint64_t end) {
        return std::all_of(dest.begin() + begin, dest.begin() + end, [](std::byte x) { return x == std::byte{0}; });
    };
    EXPECT_TRUE(copied(0, 0x200));
    EXPECT_TRUE(zero(0x400, 0x1000));
    EXPECT_TRUE(copied(0x1000, 0x1020));
    EXPECT_TRUE(zero(0x1020, 0x2000));
    EXPECT_TRUE(copied(0x2000, 0x2040));
    EXPECT_TRUE(zero(0x2040, 0x3000));
    EXPECT_TRUE(copied(0x3800, 0x4008));
    EXPECT_TRUE(copied(0x4010, file_size));
    EXPECT_TRUE(zero(file_size, image_end));
}

TEST(ElfImage, LoadWritesBasePlusAddendAtEachRelativeRelocation) {
    guest_builder b;
    b.add_rela(0x4ff3, R_X86_64_RELATIVE, -16);     // unaligned, in bss, with a negative addend
    b.add_rela(0x4ffc, R_X86_64_RELATIVE, 0x1000);  // straddles two writable pages
    const auto image = b.parse();
    EXPECT_EQ(image.relocation_count(), 4u);

    std::vector<std::byte> dest(image.image_size());
    const std::uint64_t base = 0x7000'0000'0000;
    image.load(dest, base);
    EXPECT_EQ(read_u64(dest, 0x3010), base + 0x2000);
    EXPECT_EQ(read_u64(dest, 0x4008), base + 0x2010);
    EXPECT_EQ(read_u64(dest, 0x4ff3), base - 16);
    EXPECT_EQ(read_u64(dest, 0x4ffc), base + 0x1000);
}

TEST(ElfImage, LoadIntoGuestMemoryWritesOnlyThePagesThatHoldFileBytesOrRelocations) {
    guest_builder b;
    // A 16 KiB file whose data segment asks for a bss that fills the whole 1 GiB image.
    b.phdrs[ph_data].p_memsz = max_image_size - b.phdrs[ph_data].p_vaddr;
    b.add_rela(0x2000'0008, R_X86_64_RELATIVE, 0x1000);  // one relocated word far out in the bss
    const auto file = b.build();
    const auto image = elf_image::parse(file);
    ASSERT_EQ(image.image_size(), max_image_size);

    const mem::gpa at{16 * mem::page_size};
    auto memory = mem::guest_memory::create(at.value + image.image_size() + mem::page_size);
    image.load(memory, at);

    std::vector<std::uint64_t> written;
    for (const auto w : memory.host_written_words()) {
        for (std::uint64_t p = w * 64; p < (w + 1) * 64; ++p) {
            if (memory.host_written().test(p)) written.push_back(p);
        }
    }
    std::ranges::sort(written);
    EXPECT_EQ(written, (std::vector<std::uint64_t>{16, 17, 18, 19, 20, 16 + 0x20000}))
        << "the file bytes fill image pages 0-4; the rest is bss or gaps, zero already";

    const auto bytes = [&](std::uint64_t offset, std::uint64_t size) { return memory.span(at + offset, size); };
    EXPECT_TRUE(std::ranges::equal(bytes(0x1000, 0x20), std::span(file).subspan(0x1000, 0x20)));
    EXPECT_TRUE(std::ranges::equal(bytes(0x4010, file_size - 0x4010), std::span(file).subspan(0x4010)));
    EXPECT_EQ(memory.read<std::uint64_t>(at + 0x4008), at.value + 0x2010);
    EXPECT_EQ(memory.read<std::uint64_t>(at + 0x2000'0008), at.value + 0x1000);
    const auto zero = [](std::span<const std::byte> b) {
        return std::ranges::all_of(b, [](std::byte x) { return x == std::byte{0}; });
    };
    EXPECT_TRUE(zero(bytes(file_size, 0x5000 - file_size)));
    for (const std::uint64_t page : {std::uint64_t{5}, std::uint64_t{0x1000}, max_image_size / mem::page_size - 1}) {
        EXPECT_TRUE(zero(bytes(page * mem::page_size, mem::page_size))) << "bss page " << page;
    }
}

TEST(ElfImage, LoadIntoGuestMemoryRefusesAnImageThatDoesNotFitOrAnUnalignedAddress) {
    const auto image = guest_builder{}.parse();
    auto memory = mem::guest_memory::create(image.image_size() + mem::page_size);
    EXPECT_THROW(image.load(memory, mem::gpa{2 * mem::page_size}), hl::error);
    EXPECT_THROW(image.load(memory, mem::gpa{0x123}), std::invalid_argument);
    EXPECT_NO_THROW(image.load(memory, mem::gpa{mem::page_size}));
}

TEST(ElfImage, LoadRejectsADestinationOfTheWrongSizeOrAnUnalignedBase) {
    const auto image = guest_builder{}.parse();
    std::vector<std::byte> small(image.image_size() - 1), large(image.image_size() + 4096), right(image.image_size());
    EXPECT_THROW(image.load(small, 0), std::invalid_argument);
    EXPECT_THROW(image.load(large, 0), std::invalid_argument);
    EXPECT_THROW(image.load(right, 0x123), std::invalid_argument);
    EXPECT_NO_THROW(image.load(right, 0));
}

TEST(ElfImage, KeepsOffsetsRelativeToVaddrZeroWhenTheFirstSegmentStartsHigher) {
    guest_builder b;
    b.remove_dynamic(DT_RELA);
    b.remove_dynamic(DT_RELASZ);
    b.phdrs.erase(b.phdrs.begin() + ph_headers);
    const auto image = b.parse();
    EXPECT_EQ(image.image_size(), image_end);
    EXPECT_EQ(image.segments().front(), (segment{0x1000, 0x1000, access::read | access::execute}));
    EXPECT_EQ(image.relocation_count(), 0u);
    std::vector<std::byte> dest(image.image_size(), std::byte{1});
    image.load(dest, 0);
    EXPECT_TRUE(std::all_of(dest.begin(), dest.begin() + 0x1000, [](std::byte x) { return x == std::byte{0}; }));
}

TEST(ElfImage, AcceptsAGuestWithoutADynamicSection) {
    guest_builder b;
    b.phdrs.erase(b.phdrs.begin() + ph_dynamic);
    EXPECT_EQ(b.parse().relocation_count(), 0u);
}

TEST(ElfImage, IgnoresNotesStackPropertiesAndUnknownSegmentTypes) {
    guest_builder b;
    b.phdrs.push_back({PT_NOTE, PF_R, u64_max, u64_max, 0, u64_max, 1, 4});
    b.phdrs.push_back({PT_GNU_PROPERTY, PF_R, 0x10000000, 0, 0, 0x100, 0x100, 8});
    b.phdrs.push_back({PT_GNU_EH_FRAME, PF_R, 0, 0, 0, u64_max, u64_max, 4});
    b.phdrs.push_back({0x6abcdef0, PF_R | PF_W | PF_X, u64_max, u64_max, 0, u64_max, u64_max, 3});
    const auto image = b.parse();
    EXPECT_EQ(image.segments().size(), 5u);
}

TEST(ElfImage, ParsesAndRelocatesTheRealSimpleguest) {
    const char* path = HL_SIMPLEGUEST;
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << "cannot open " << path;
    std::vector<char> raw{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<std::byte> file(raw.size());
    std::memcpy(file.data(), raw.data(), raw.size());

    const auto image = elf_image::parse(std::move(file));
    const auto segments = image.segments();
    ASSERT_FALSE(segments.empty());
    bool entry_in_code = false;
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const auto& s = segments[i];
        EXPECT_EQ(s.offset % 4096, 0u);
        EXPECT_EQ(s.size % 4096, 0u);
        EXPECT_FALSE(has(s.perms, access::write) && has(s.perms, access::execute));
        if (i > 0) {
            EXPECT_LE(segments[i - 1].offset + segments[i - 1].size, s.offset);
        }
        entry_in_code |= has(s.perms, access::execute) && image.entry_offset() - s.offset < s.size;
    }
    EXPECT_TRUE(entry_in_code);
    EXPECT_EQ(segments.back().offset + segments.back().size, image.image_size());

    // Loading at two bases may only differ in the relocated words.
    std::vector<std::byte> low(image.image_size()), high(image.image_size());
    image.load(low, 0);
    image.load(high, std::uint64_t{1} << 40);
    const auto differing = std::inner_product(low.begin(), low.end(), high.begin(), std::size_t{0}, std::plus<>(),
                                              [](std::byte a, std::byte b) { return a != b ? 1u : 0u; });
    EXPECT_LE(differing, 8 * image.relocation_count());
    EXPECT_EQ(differing > 0, image.relocation_count() > 0);
}

TEST(ElfImage, EitherParsesOrRejectsRandomlyCorruptedFiles) {
    const auto original = guest_builder{}.build();
    std::mt19937_64 rng(20240601);
    const auto below = [&](std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); };
    constexpr std::uint64_t interesting[] = {0, 1, 0x1000, 0x3800, max_image_size, u64_max, u64_max - 0xfff};
    int accepted = 0, refused = 0;
    for (int iteration = 0; iteration < 20000; ++iteration) {
        auto file = original;
        switch (below(4)) {
        case 0: file.resize(below(file.size())); break;
        case 1:
            for (auto n = 1 + below(4); n > 0; --n) file[below(0x400)] ^= static_cast<std::byte>(1 + below(255));
            break;
        case 2:
            for (auto n = 1 + below(4); n > 0; --n) file[below(file.size())] ^= static_cast<std::byte>(1 + below(255));
            break;
        default: {
            const auto value = below(2) ? interesting[below(std::size(interesting))] : rng();
            const auto region = below(3) == 0 ? dynamic_offset : 0;
            std::memcpy(file.data() + region + 8 * below(0x400 / 8), &value, sizeof value);
        }
        }
        try {
            const auto image = elf_image::parse(std::move(file));
            ++accepted;
            if (image.image_size() <= (std::uint64_t{64} << 20)) {
                std::vector<std::byte> dest(image.image_size());
                image.load(dest, 0x200000);
            }
        } catch (const hl::error& e) {
            ++refused;
            ASSERT_EQ(e.code(), make_error_code(errc::invalid_guest)) << "iteration " << iteration << ": " << e.what();
        }
    }
    RecordProperty("accepted", accepted);
    RecordProperty("refused", refused);
    EXPECT_GT(accepted, 0);
    EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace hl::loader
