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

namespace hl::loader {
namespace {

constexpr std::uint64_t rela_offset = 0x200;
constexpr std::uint64_t dynamic_offset = 0x3800;
constexpr std::uint64_t file_size = 0x4100;
constexpr std::uint64_t image_end = 0x6000;
constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

enum ph : std::size_t { ph_headers, ph_text, ph_rodata, ph_data, ph_dynamic, ph_relro, ph_stack };

std::byte pattern(std::uint64_t file_offset) { return static_cast<std::byte>(file_offset * 131 + 7); }

/// Synthesizes a static-PIE guest laid out the way ld lays one out:
///   [0x0000, 0x1000)  R   ELF header, program headers, RELA table at 0x200
///   [0x1000, 0x2000)  RX  text, entry at 0x1000
///   [0x2000, 0x3000)  R   rodata
///   [0x3000, 0x4000)  RW  .data.rel.ro and .dynamic (at 0x3800), all of it PT_GNU_RELRO
///   [0x4000, 0x6000)  RW  data (file bytes up to 0x4100), then bss up to 0x5800
/// Every file byte outside the ELF structures holds pattern(offset), so copies and zero-fill show.
struct guest_builder {
    Elf64_Ehdr header{};
    std::vector<Elf64_Phdr> phdrs;
    std::vector<Elf64_Dyn> dynamic;
    std::vector<Elf64_Rela> relas;

    guest_builder() {
        std::memcpy(header.e_ident, ELFMAG, SELFMAG);
        header.e_ident[EI_CLASS] = ELFCLASS64;
        header.e_ident[EI_DATA] = ELFDATA2LSB;
        header.e_ident[EI_VERSION] = EV_CURRENT;
        header.e_type = ET_DYN;
        header.e_machine = EM_X86_64;
        header.e_version = EV_CURRENT;
        header.e_entry = 0x1000;
        header.e_phoff = sizeof(Elf64_Ehdr);
        header.e_ehsize = sizeof(Elf64_Ehdr);
        header.e_phentsize = sizeof(Elf64_Phdr);
        phdrs = {
            {PT_LOAD, PF_R, 0, 0, 0, 0x400, 0x400, 0x1000},
            {PT_LOAD, PF_R | PF_X, 0x1000, 0x1000, 0x1000, 0x20, 0x20, 0x1000},
            {PT_LOAD, PF_R, 0x2000, 0x2000, 0x2000, 0x40, 0x40, 0x1000},
            {PT_LOAD, PF_R | PF_W, 0x3000, 0x3000, 0x3000, 0x1100, 0x2800, 0x1000},
            {PT_DYNAMIC, PF_R | PF_W, dynamic_offset, dynamic_offset, dynamic_offset, 0, 0, 8},
            {PT_GNU_RELRO, PF_R, 0x3000, 0x3000, 0x3000, 0x1000, 0x1000, 1},
            {PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0, 16},
        };
        dynamic = {{DT_RELA, {rela_offset}},
                   {DT_RELASZ, {0}},
                   {DT_RELAENT, {sizeof(Elf64_Rela)}},
                   {DT_FLAGS_1, {DF_1_PIE}},
                   {DT_NULL, {0}}};
        add_rela(0x3010, R_X86_64_RELATIVE, 0x2000);  // in the RELRO page
        add_rela(0x4008, R_X86_64_RELATIVE, 0x2010);  // in ordinary data
        add_rela(0, R_X86_64_NONE, 0);
        sync_dynamic_size();
    }

    void set_dynamic(Elf64_Sxword tag, std::uint64_t value) {
        auto it = std::ranges::find(dynamic, tag, &Elf64_Dyn::d_tag);
        if (it == dynamic.end()) it = dynamic.insert(dynamic.end() - 1, Elf64_Dyn{tag, {0}});
        it->d_un.d_val = value;
        sync_dynamic_size();
    }

    void remove_dynamic(Elf64_Sxword tag) {
        std::erase_if(dynamic, [tag](const Elf64_Dyn& d) { return d.d_tag == tag; });
        sync_dynamic_size();
    }

    void add_rela(std::uint64_t offset, std::uint32_t type, std::int64_t addend, std::uint32_t symbol = 0) {
        relas.push_back({offset, ELF64_R_INFO(symbol, type), addend});
        set_dynamic(DT_RELASZ, relas.size() * sizeof(Elf64_Rela));
    }

    void sync_dynamic_size() {
        phdrs[ph_dynamic].p_filesz = phdrs[ph_dynamic].p_memsz = dynamic.size() * sizeof(Elf64_Dyn);
    }

    std::vector<std::byte> build() const {
        std::vector<std::byte> file(file_size);
        for (std::uint64_t i = 0; i < file.size(); ++i) file[i] = pattern(i);
        auto h = header;
        h.e_phnum = static_cast<Elf64_Half>(phdrs.size());
        put(file, 0, &h, sizeof h);
        put(file, h.e_phoff, phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr));
        put(file, rela_offset, relas.data(), relas.size() * sizeof(Elf64_Rela));
        put(file, dynamic_offset, dynamic.data(), dynamic.size() * sizeof(Elf64_Dyn));
        return file;
    }

    elf_image parse() const { return elf_image::parse(build()); }

private:
    static void put(std::vector<std::byte>& file, std::uint64_t offset, const void* data, std::size_t size) {
        if (offset <= file.size() && size <= file.size() - offset) std::memcpy(file.data() + offset, data, size);
    }
};

/// Success when parse() throws hl::error(invalid_guest) whose message contains `says`.
::testing::AssertionResult rejected(std::vector<std::byte> file, const std::string& says) {
    try {
        elf_image::parse(std::move(file));
    } catch (const hl::error& e) {
        if (e.code() != make_error_code(errc::invalid_guest)) {
            return ::testing::AssertionFailure() << "wrong error code: " << e.code().message();
        }
        const std::string what = e.what();
        if (what.find(says) == std::string::npos) {
            return ::testing::AssertionFailure() << "message \"" << what << "\" does not say \"" << says << "\"";
        }
        return ::testing::AssertionSuccess() << what;
    }
    return ::testing::AssertionFailure() << "parse accepted the file";
}

::testing::AssertionResult rejected(const guest_builder& b, const std::string& says) {
    return rejected(b.build(), says);
}

std::uint64_t read_u64(const std::vector<std::byte>& image, std::uint64_t offset) {
    std::uint64_t value;
    std::memcpy(&value, image.data() + offset, sizeof value);
    return value;
}

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

TEST(ElfImage, RejectsAnEmptyFile) {
    EXPECT_TRUE(rejected(std::vector<std::byte>{}, "too small for the 64-byte ELF64 header"));
}

TEST(ElfImage, RejectsAFileTruncatedAnywhere) {
    const auto file = guest_builder{}.build();
    for (std::size_t length : {std::size_t{4}, std::size_t{63}, std::size_t{64 + 56 * 3}, std::size_t{0x210},
                               std::size_t{0x1010}, std::size_t{0x2020}, std::size_t{0x3808}, std::size_t{0x40ff}}) {
        EXPECT_TRUE(rejected(std::vector<std::byte>(file.begin(), file.begin() + length), "")) << length;
    }
}

TEST(ElfImage, RejectsBadMagic) {
    guest_builder b;
    b.header.e_ident[EI_MAG1] = 'X';
    EXPECT_TRUE(rejected(b, "bad magic"));
}

TEST(ElfImage, RejectsA32BitElf) {
    guest_builder b;
    b.header.e_ident[EI_CLASS] = ELFCLASS32;
    EXPECT_TRUE(rejected(b, "32-bit ELF (ELFCLASS32)"));
}

TEST(ElfImage, RejectsABigEndianElf) {
    guest_builder b;
    b.header.e_ident[EI_DATA] = ELFDATA2MSB;
    EXPECT_TRUE(rejected(b, "big-endian"));
}

TEST(ElfImage, RejectsAnAarch64Binary) {
    guest_builder b;
    b.header.e_machine = EM_AARCH64;
    EXPECT_TRUE(rejected(b, "built for AArch64 (machine 183), expected x86-64"));
}

TEST(ElfImage, RejectsAFixedAddressExecutableAndExplainsStaticPie) {
    guest_builder b;
    b.header.e_type = ET_EXEC;
    EXPECT_TRUE(rejected(b, "ET_EXEC"));
    EXPECT_TRUE(rejected(b, "guests must be static-PIE"));
}

TEST(ElfImage, RejectsABadElfVersion) {
    guest_builder b;
    b.header.e_version = 2;
    EXPECT_TRUE(rejected(b, "unsupported ELF version 2"));
}

TEST(ElfImage, RejectsAWrongProgramHeaderEntrySize) {
    guest_builder b;
    b.header.e_phentsize = 32;
    EXPECT_TRUE(rejected(b, "e_phentsize is 32, expected 56"));
}

TEST(ElfImage, RejectsProgramHeadersOutsideTheFile) {
    guest_builder b;
    b.header.e_phoff = file_size - 100;
    EXPECT_TRUE(rejected(b, "program headers at file offset 0x409c extend past the end"));
    b.header.e_phoff = u64_max - 8;
    EXPECT_TRUE(rejected(b, "extend past the end"));
}

TEST(ElfImage, RejectsAGuestWithoutLoadSegments) {
    guest_builder b;
    for (auto i : {ph_headers, ph_text, ph_rodata, ph_data}) b.phdrs[i].p_type = PT_NULL;
    EXPECT_TRUE(rejected(b, "no PT_LOAD"));
}

TEST(ElfImage, RejectsAnInterpreter) {
    guest_builder b;
    b.phdrs.push_back({PT_INTERP, PF_R, 0x300, 0x300, 0x300, 0x1c, 0x1c, 1});
    EXPECT_TRUE(rejected(b, "program header 7 (PT_INTERP)"));
}

TEST(ElfImage, RejectsThreadLocalStorageAndSaysItIsNotSupported) {
    guest_builder b;
    b.phdrs.push_back({PT_TLS, PF_R, 0x4000, 0x4000, 0x4000, 0, 0x8, 4});
    EXPECT_TRUE(rejected(b, "program header 7 (PT_TLS)"));
    EXPECT_TRUE(rejected(b, "thread-local storage"));
    EXPECT_TRUE(rejected(b, "not support"));
}

TEST(ElfImage, RejectsFileSizeLargerThanMemorySize) {
    guest_builder b;
    b.phdrs[ph_rodata].p_filesz = 0x41;
    EXPECT_TRUE(rejected(b, "program header 2 (PT_LOAD): p_filesz 0x41 exceeds p_memsz 0x40"));
}

TEST(ElfImage, RejectsSegmentFileBytesPastTheEndOfTheFile) {
    guest_builder b;
    b.phdrs[ph_data].p_filesz = 0x1101;
    EXPECT_TRUE(rejected(b, "file bytes [0x3000, +0x1101) lie outside the 16640-byte file"));
}

TEST(ElfImage, RejectsSegmentFileBytesWhoseEndOverflows) {
    guest_builder b;
    b.phdrs[ph_rodata].p_filesz = b.phdrs[ph_rodata].p_memsz = u64_max - 0x1000;  // end wraps to 0xfff
    EXPECT_TRUE(rejected(b, "file bytes [0x2000, +0xffffffffffffefff) lie outside"));
    b.phdrs[ph_rodata].p_offset = u64_max - 0xfff;
    b.phdrs[ph_rodata].p_filesz = b.phdrs[ph_rodata].p_memsz = 0x40;
    EXPECT_TRUE(rejected(b, "lie outside"));
}

TEST(ElfImage, RejectsAHugeMemorySizeWithoutAllocating) {
    guest_builder b;
    b.phdrs[ph_data].p_memsz = std::uint64_t{1} << 40;
    EXPECT_TRUE(rejected(b, "reaches past the 0x40000000-byte image limit"));
    b.phdrs[ph_data].p_memsz = u64_max;
    EXPECT_TRUE(rejected(b, "image limit"));
    b.phdrs[ph_data].p_memsz = max_image_size - 0x3000 + 1;
    EXPECT_TRUE(rejected(b, "image limit"));
}

TEST(ElfImage, RejectsASegmentWhoseAddressAndOffsetDisagreeWithinAPage) {
    guest_builder b;
    b.phdrs[ph_rodata].p_vaddr = 0x2008;
    EXPECT_TRUE(rejected(b, "p_vaddr 0x2008 and p_offset 0x2000 are not congruent"));
}

TEST(ElfImage, RejectsTwoSegmentsSharingAPage) {
    guest_builder b;
    b.phdrs[ph_rodata].p_memsz = 0x1001;
    EXPECT_TRUE(rejected(b, "program headers 2 and 3 (PT_LOAD) both map the page at 0x3000"));
}

TEST(ElfImage, RejectsAWritableAndExecutableSegment) {
    guest_builder b;
    b.phdrs[ph_text].p_flags = PF_R | PF_W | PF_X;
    EXPECT_TRUE(rejected(b, "program header 1 (PT_LOAD) at 0x1000 is both writable and executable (W^X)"));
}

TEST(ElfImage, RejectsAnEntryPointOutsideCode) {
    guest_builder b;
    b.header.e_entry = 0x2000;
    EXPECT_TRUE(rejected(b, "entry point 0x2000 is not inside an executable PT_LOAD"));
    b.header.e_entry = 0x1020;
    EXPECT_TRUE(rejected(b, "entry point 0x1020"));
    b.header.e_entry = u64_max;
    EXPECT_TRUE(rejected(b, "entry point"));
}

TEST(ElfImage, RejectsRelroOverCode) {
    guest_builder b;
    b.phdrs[ph_relro].p_vaddr = 0x1000;
    b.phdrs[ph_relro].p_memsz = 0x3000;
    EXPECT_TRUE(rejected(b, "RELRO would make code non-executable"));
}

TEST(ElfImage, RejectsADynamicSectionOutsideTheLoadedFileBytes) {
    guest_builder b;
    b.phdrs[ph_dynamic].p_offset = 0x40f0;
    EXPECT_TRUE(rejected(b, "(PT_DYNAMIC): file bytes [0x40f0, +0x50) are not inside the file bytes of any PT_LOAD"));
}

TEST(ElfImage, RejectsAnUnterminatedDynamicSection) {
    guest_builder b;
    b.dynamic.back() = {DT_DEBUG, {0}};
    EXPECT_TRUE(rejected(b, "no DT_NULL terminator"));
}

TEST(ElfImage, RejectsSharedLibraryDependencies) {
    guest_builder b;
    b.set_dynamic(DT_NEEDED, 1);
    EXPECT_TRUE(rejected(b, "dynamic entry 4: DT_NEEDED"));
}

TEST(ElfImage, RejectsRelRelocations) {
    guest_builder b;
    b.set_dynamic(DT_REL, 0x200);
    EXPECT_TRUE(rejected(b, "only RELA is supported"));
}

TEST(ElfImage, RejectsTextRelocations) {
    guest_builder b;
    b.set_dynamic(DT_TEXTREL, 0);
    EXPECT_TRUE(rejected(b, "DT_TEXTREL"));
}

TEST(ElfImage, RejectsPltRelocations) {
    guest_builder b;
    b.set_dynamic(DT_JMPREL, 0x300);
    b.set_dynamic(DT_PLTRELSZ, 24);
    EXPECT_TRUE(rejected(b, "PLT relocations (DT_JMPREL, DT_PLTRELSZ 0x18)"));
}

TEST(ElfImage, RejectsAnAbsoluteSymbolRelocation) {
    guest_builder b;
    b.add_rela(0x4010, R_X86_64_64, 0);
    EXPECT_TRUE(rejected(b, "relocation 3 (R_X86_64_64 at offset 0x4010): only R_X86_64_RELATIVE"));
}

TEST(ElfImage, RejectsARelativeRelocationWithASymbol) {
    guest_builder b;
    b.add_rela(0x4010, R_X86_64_RELATIVE, 0, 5);
    EXPECT_TRUE(rejected(b, "refers to symbol 5"));
}

TEST(ElfImage, RejectsARelativeRelocationOutsideTheImage) {
    guest_builder b;
    b.add_rela(image_end - 4, R_X86_64_RELATIVE, 0);
    EXPECT_TRUE(rejected(b, "relocation 3 (R_X86_64_RELATIVE at offset 0x5ffc): the 8-byte target lies outside"));
    b.relas.back().r_offset = u64_max - 3;
    EXPECT_TRUE(rejected(b, "lies outside"));
}

TEST(ElfImage, RejectsARelativeRelocationIntoAReadOnlySegment) {
    guest_builder b;
    b.add_rela(0x2008, R_X86_64_RELATIVE, 0);
    EXPECT_TRUE(rejected(b, "(R_X86_64_RELATIVE at offset 0x2008): the target page 0x2000 is not in a writable"));
    b.relas.back().r_offset = 0x2ffc;  // its last 4 bytes would be writable
    EXPECT_TRUE(rejected(b, "the target page 0x2000"));
    b.relas.back().r_offset = 0x1004;
    EXPECT_TRUE(rejected(b, "the target page 0x1000"));
}

TEST(ElfImage, RejectsARelaTableOutsideTheImage) {
    guest_builder b;
    b.set_dynamic(DT_RELA, 0x100000);
    EXPECT_TRUE(rejected(b, "the RELA table [0x100000, +0x48) is not inside the file-backed part of a PT_LOAD"));
    b.set_dynamic(DT_RELA, 0x3f0);  // runs past the 0x400 file bytes of the first segment
    EXPECT_TRUE(rejected(b, "RELA table [0x3f0"));
    b.set_dynamic(DT_RELA, rela_offset);
    b.set_dynamic(DT_RELASZ, u64_max - 7);
    EXPECT_TRUE(rejected(b, "DT_RELASZ"));
    b.set_dynamic(DT_RELASZ, 24 * 0x100000);
    EXPECT_TRUE(rejected(b, "not inside the file-backed part"));
}

TEST(ElfImage, RejectsAWrongRelaEntrySize) {
    guest_builder b;
    b.set_dynamic(DT_RELAENT, 16);
    EXPECT_TRUE(rejected(b, "DT_RELAENT is 16, expected 24"));
    b.set_dynamic(DT_RELAENT, 24);
    b.set_dynamic(DT_RELASZ, 50);
    EXPECT_TRUE(rejected(b, "DT_RELASZ 0x32 is not a multiple"));
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
