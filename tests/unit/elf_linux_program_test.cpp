// SPDX-License-Identifier: Apache-2.0
// Linux programs (the SDK's glibc and musl flavours): the note that marks them, and what the loader
// does differently for them: PT_TLS and R_X86_64_IRELATIVE allowed, no relocation applied (the
// program relocates itself), RELRO left writable for that.
#include <elf.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "elf_guest_builder.hpp"
#include "hl/abi/hl_abi.h"
#include "loader/elf_image.hpp"

namespace hl::loader {
namespace {

using namespace hl::loader::test;

constexpr std::uint64_t note_offset = 0x300;

/// The builder's guest with a PT_NOTE at note_offset holding one note.
struct note_builder : guest_builder {
    std::uint32_t name_size = sizeof HL_NOTE_NAME;
    std::uint32_t desc_size = 4;
    std::uint32_t type = HL_NOTE_GUEST_KIND;
    std::uint32_t kind = HL_GUEST_KIND_LINUX;
    std::array<char, 12> name{HL_NOTE_NAME};
    std::uint64_t segment_size = 12 + 12 + 4;

    std::size_t note_index;

    note_builder() : note_index(phdrs.size()) {
        phdrs.push_back({PT_NOTE, PF_R, note_offset, note_offset, note_offset, 0, 0, 4});
    }

    std::vector<std::byte> file() const {
        auto b = static_cast<const guest_builder&>(*this);
        b.phdrs[note_index].p_filesz = b.phdrs[note_index].p_memsz = segment_size;
        auto bytes = b.build();
        const std::array<std::uint32_t, 3> header{name_size, desc_size, type};
        std::memcpy(bytes.data() + note_offset, header.data(), sizeof header);
        std::memcpy(bytes.data() + note_offset + 12, name.data(), name.size());
        std::memcpy(bytes.data() + note_offset + 24, &kind, sizeof kind);
        return bytes;
    }
    elf_image parse() const { return elf_image::parse(file()); }
};

TEST(ElfLinuxProgram, AGuestWithoutTheNoteIsFreestanding) {
    EXPECT_EQ(guest_builder{}.parse().kind(), guest_kind::freestanding);
}

TEST(ElfLinuxProgram, TheNoteMakesALinuxProgramThatRelocatesItself) {
    const auto image = note_builder{}.parse();
    EXPECT_EQ(image.kind(), guest_kind::linux_program);
    EXPECT_EQ(image.relocation_count(), 0u);
    EXPECT_EQ(image.phdr_offset(), sizeof(Elf64_Ehdr));
    EXPECT_EQ(image.phdr_count(), note_builder{}.phdrs.size());
    // The RELRO page keeps its PT_LOAD's write permission: the program's own relocation writes it.
    for (const auto& s : image.segments()) {
        if (s.offset == 0x3000) {
            EXPECT_TRUE(has(s.perms, access::write));
        }
    }
}

TEST(ElfLinuxProgram, LoadWritesTheFileBytesAndNoRelocation) {
    const auto image = note_builder{}.parse();
    std::vector<std::byte> dest(image.image_size());
    image.load(dest, 0x100000);
    const auto file = note_builder{}.file();
    // 0x3010 and 0x4008 are relocation targets: they hold the file's bytes, not base + addend.
    EXPECT_EQ(std::memcmp(dest.data() + 0x3010, file.data() + 0x3010, 8), 0);
    EXPECT_EQ(std::memcmp(dest.data() + 0x4008, file.data() + 0x4008, 8), 0);
}

TEST(ElfLinuxProgram, AcceptsThreadLocalStorageAndIrelativeRelocations) {
    note_builder b;
    b.phdrs.push_back({PT_TLS, PF_R, 0x4000, 0x4000, 0x4000, 0x10, 0x20, 8});
    b.add_rela(0x4010, R_X86_64_IRELATIVE, 0x1000);
    EXPECT_EQ(b.parse().kind(), guest_kind::linux_program);
}

TEST(ElfLinuxProgram, AFreestandingGuestStillRefusesThem) {
    guest_builder tls;
    tls.phdrs.push_back({PT_TLS, PF_R, 0x4000, 0x4000, 0x4000, 0x10, 0x20, 8});
    EXPECT_TRUE(rejected(tls, "thread-local storage"));
    guest_builder irelative;
    irelative.add_rela(0x4010, R_X86_64_IRELATIVE, 0x1000);
    EXPECT_TRUE(rejected(irelative, "only R_X86_64_RELATIVE relocations are supported"));
}

TEST(ElfLinuxProgram, ALinuxProgramStillRefusesOtherRelocationsAndTargetsOutsideWritablePages) {
    note_builder glob;
    glob.add_rela(0x4010, R_X86_64_GLOB_DAT, 0);
    EXPECT_TRUE(rejected(glob.file(), "only R_X86_64_RELATIVE and R_X86_64_IRELATIVE"));
    note_builder text;
    text.add_rela(0x1008, R_X86_64_IRELATIVE, 0x1000);
    EXPECT_TRUE(rejected(text.file(), "not in a writable segment"));
}

TEST(ElfLinuxProgram, RefusesAnUnknownGuestKind) {
    note_builder b;
    b.kind = 77;
    EXPECT_TRUE(rejected(b.file(), "guest kind 77"));
}

TEST(ElfLinuxProgram, RefusesAKindNoteOfTheWrongSize) {
    note_builder b;
    b.desc_size = 8;
    b.segment_size = 12 + 12 + 8;
    EXPECT_TRUE(rejected(b.file(), "not 4 bytes"));
}

TEST(ElfLinuxProgram, RefusesNotesThatRunPastTheirSegment) {
    note_builder huge_name;
    huge_name.name_size = 0xfffffff0u;
    EXPECT_TRUE(rejected(huge_name.file(), "runs past its segment"));
    note_builder huge_desc;
    huge_desc.desc_size = 0xffffffffu;
    EXPECT_TRUE(rejected(huge_desc.file(), "runs past its segment"));
}

TEST(ElfLinuxProgram, IgnoresANoteSegmentOutsideTheFileAsTheKernelDoes) {
    note_builder outside;
    outside.segment_size = 0x100000;
    EXPECT_EQ(outside.parse().kind(), guest_kind::freestanding);
}

TEST(ElfLinuxProgram, IgnoresOtherOwnersNotesAndATruncatedTail) {
    note_builder other;
    other.name = {'G', 'N', 'U', 0};
    other.name_size = 4;
    other.desc_size = 4;
    other.segment_size = 12 + 4 + 4 + 5;  // a GNU note, then a 5-byte tail too short for a note header
    EXPECT_EQ(other.parse().kind(), guest_kind::freestanding);
}

}  // namespace
}  // namespace hl::loader
