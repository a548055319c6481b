// SPDX-License-Identifier: Apache-2.0
// What the ELF parser's two files share: failing with errc::invalid_guest, bounds-checked reads of
// the file, and the validated PT_LOADs. Internal to src/loader/.
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "loader/elf_image.hpp"

namespace hl::loader::elf {

/// Throws hl::error(errc::invalid_guest) with "invalid guest ELF: " and `what`.
[[noreturn]] void fail(const std::string& what);

/// "0x1f"
std::string hex(std::uint64_t value);

/// "program header 3 (PT_LOAD)"
std::string describe(std::size_t index, const char* type);

/// [offset, offset + length) lies inside [0, limit), without overflow.
constexpr bool fits(std::uint64_t offset, std::uint64_t length, std::uint64_t limit) noexcept {
    return offset <= limit && length <= limit - offset;
}

/// Copies a T out of `file`; `what` names it for the error message and is only called on failure.
template <class T, class Name>
T read_struct(std::span<const std::byte> file, std::uint64_t offset, Name what) {
    if (!fits(offset, sizeof(T), file.size())) {
        fail(what() + " at file offset " + hex(offset) + " (" + std::to_string(sizeof(T)) +
             " bytes) extends past the end of the " + std::to_string(file.size()) + "-byte file");
    }
    T value;
    std::memcpy(&value, file.data() + offset, sizeof(T));
    return value;
}

/// A PT_LOAD as validated by check_load, with its page span.
struct pt_load {
    std::size_t index;  // program header index, for messages
    Elf64_Phdr phdr;
    std::uint64_t page_begin;
    std::uint64_t page_end;
    access perms;
};

/// Maps [vaddr, vaddr + size) to the file offset of the same bytes, if all of them are file-backed.
std::optional<std::uint64_t> file_offset_of(std::span<const pt_load> loads, std::uint64_t vaddr, std::uint64_t size);

/// Where the RELA table is in the file; count 0 when there is none.
struct rela_table {
    std::uint64_t file_offset = 0;
    std::uint64_t count = 0;
    /// DT_JMPREL (.rela.plt), allowed only for a self-relocating program: glibc keeps its
    /// R_X86_64_IRELATIVE entries there.
    std::uint64_t plt_file_offset = 0;
    std::uint64_t plt_count = 0;
};

/// Reads the dynamic section `dyn` (program header `index`) and returns where the RELA table is;
/// rejects anything that needs a dynamic linker (libraries, REL/RELR/PLT relocations, text
/// relocations).
rela_table read_dynamic(std::span<const std::byte> file, std::size_t index, const Elf64_Phdr& dyn,
                        std::span<const pt_load> loads, bool allow_plt = false);

}  // namespace hl::loader::elf
