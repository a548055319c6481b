// SPDX-License-Identifier: Apache-2.0
#include "sandbox/core_file.hpp"

#include <elf.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "util/unique_fd.hpp"

namespace {

using hl::detail::choose_segments;
using hl::detail::core_segment;
using hl::detail::memory_range;
namespace mem = hl::mem;

constexpr std::uint64_t page = mem::page_size;
const mem::perms user_rw = mem::perms::user | mem::perms::read | mem::perms::write;
const mem::perms user_rx = mem::perms::user | mem::perms::read | mem::perms::execute;

// page 1: supervisor-only; pages 2-3: code; pages 4-7: heap; pages 9-11: stack (8 is a guard).
const std::vector<mem::region> regions{
    {"page tables", mem::gpa{1 * page}, page, mem::perms::read | mem::perms::write},
    {"code", mem::gpa{2 * page}, 2 * page, user_rx},
    {"heap", mem::gpa{4 * page}, 4 * page, user_rw},
    {"stack", mem::gpa{9 * page}, 3 * page, user_rw},
};
constexpr std::uint64_t pages = 12;

std::uint64_t total(const std::vector<core_segment>& segments) {
    std::uint64_t bytes = 0;
    for (const auto& s : segments) bytes += s.size;
    return bytes;
}

TEST(CoreFile, TakesEveryPageTheGuestCanReadWhenTheBudgetAllows) {
    const std::vector<memory_range> everything{{0, pages * page}};
    const auto segments = choose_segments(regions, everything, 1 << 20, pages);
    ASSERT_EQ(segments.size(), 3u);
    EXPECT_EQ(segments[0].begin.value, 2 * page);
    EXPECT_EQ(segments[0].size, 2 * page);
    EXPECT_EQ(segments[0].access, user_rx);
    EXPECT_EQ(segments[1].begin.value, 4 * page);
    EXPECT_EQ(segments[2].begin.value, 9 * page);
    EXPECT_EQ(total(segments), 9 * page);  // never the supervisor-only page or the guard
}

TEST(CoreFile, TakesWantedRangesInOrderUntilTheBudgetIsSpent) {
    // The stack from RSP (page 10) up, then the page at RIP (3), then everything.
    const std::vector<memory_range> wanted{
        {10 * page + 16, 12 * page}, {3 * page + 5, 3 * page + 6}, {0, pages * page}};
    const auto segments = choose_segments(regions, wanted, 4 * page + page / 2, pages);
    ASSERT_EQ(segments.size(), 2u);
    EXPECT_EQ(segments[0].begin.value, 2 * page);  // page 3, then page 2: the lowest left once those are in
    EXPECT_EQ(segments[0].size, 2 * page);
    EXPECT_EQ(segments[1].begin.value, 10 * page);
    EXPECT_EQ(segments[1].size, 2 * page);
    EXPECT_EQ(total(segments), 4 * page);  // whole pages only: the half page left takes none of the heap
}

TEST(CoreFile, ATinyBudgetKeepsTheFirstWantedPagesOnly) {
    const std::vector<memory_range> wanted{{11 * page, 12 * page}, {0, pages * page}};
    const auto segments = choose_segments(regions, wanted, page, pages);
    ASSERT_EQ(segments.size(), 1u);
    EXPECT_EQ(segments[0].begin.value, 11 * page);
    EXPECT_TRUE(choose_segments(regions, wanted, page - 1, pages).empty());
}

TEST(CoreFile, IsAnElfCoreWithItsNotesAndSegmentsWhereTheHeadersSay) {
    auto memory = mem::guest_memory::create(pages * page);
    memory.write(mem::gpa{9 * page}, std::uint64_t{0x1122334455667788});
    const std::vector<core_segment> segments{{mem::gpa{9 * page}, page, user_rw}};
    const std::vector<hl::detail::core_note> notes{{NT_PRSTATUS, std::vector<std::byte>(7, std::byte{0xab})}};
    char name[] = "/tmp/hl-core-file-test-XXXXXX";
    hl::util::unique_fd fd(::mkstemp(name));
    ASSERT_TRUE(fd);
    ::unlink(name);
    hl::detail::write_core_file(fd.get(), notes, segments, 4, memory);

    std::vector<std::byte> file(static_cast<std::size_t>(::lseek(fd.get(), 0, SEEK_END)));
    ASSERT_EQ(::pread(fd.get(), file.data(), file.size(), 0), static_cast<ssize_t>(file.size()));
    EXPECT_EQ(file.size(), hl::detail::core_header_bytes(notes, 4) + page);
    Elf64_Ehdr eh;
    std::memcpy(&eh, file.data(), sizeof eh);
    EXPECT_EQ(std::memcmp(eh.e_ident, ELFMAG, SELFMAG), 0);
    EXPECT_EQ(eh.e_type, ET_CORE);
    EXPECT_EQ(eh.e_machine, EM_X86_64);
    ASSERT_EQ(eh.e_phnum, 2);
    Elf64_Phdr note, load;
    std::memcpy(&note, file.data() + eh.e_phoff, sizeof note);
    std::memcpy(&load, file.data() + eh.e_phoff + sizeof note, sizeof load);
    EXPECT_EQ(note.p_type, PT_NOTE);
    Elf64_Nhdr nh;
    std::memcpy(&nh, file.data() + note.p_offset, sizeof nh);
    EXPECT_EQ(nh.n_type, NT_PRSTATUS);
    EXPECT_EQ(nh.n_descsz, 7u);
    EXPECT_EQ(std::memcmp(file.data() + note.p_offset + sizeof nh, "CORE", 5), 0);
    EXPECT_EQ(note.p_filesz, sizeof nh + 8 + 8);  // name and descriptor padded to 4 bytes
    EXPECT_EQ(load.p_type, PT_LOAD);
    EXPECT_EQ(load.p_vaddr, 9 * page);
    EXPECT_EQ(load.p_flags, static_cast<Elf64_Word>(PF_R | PF_W));
    EXPECT_EQ(load.p_filesz, page);
    EXPECT_EQ(load.p_offset % page, 0u);
    std::uint64_t word;
    std::memcpy(&word, file.data() + load.p_offset, sizeof word);
    EXPECT_EQ(word, 0x1122334455667788u);
}

}  // namespace
