// SPDX-License-Identifier: Apache-2.0
// The ELF loader refuses every malformed or unsupported guest with a message that says why.
#include "loader/elf_image.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "elf_guest_builder.hpp"

namespace hl::loader {
namespace {

using namespace hl::loader::test;

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

}  // namespace
}  // namespace hl::loader
