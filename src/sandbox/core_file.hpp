// SPDX-License-Identifier: Apache-2.0
// The ELF core file of a guest: which memory it holds within its size limit, its notes, and writing
// it. Guest memory is identity-mapped (mem::gpa), so a guest physical address is the virtual address
// a debugger sees, and every PT_LOAD's p_vaddr is the gpa of its bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "vmm/cpu_state.hpp"

namespace hl::detail {

/// [begin, end) of guest memory.
struct memory_range {
    std::uint64_t begin = 0, end = 0;
};

/// A piece of guest memory the core holds, with the guest's permissions: one PT_LOAD.
struct core_segment {
    mem::gpa begin;
    std::uint64_t size = 0;
    mem::perms access = mem::perms::none;
};

/// One ELF note ("CORE" names them all): an NT_* type and its descriptor.
struct core_note {
    std::uint32_t type = 0;
    std::vector<std::byte> desc;
};

/// The thread the notes describe: its registers when the guest failed (RIP at the instruction to
/// show), its x87/SSE registers when they could be read, and the signal a Linux process would have
/// died of (0 for none: an exit).
struct core_thread {
    vmm::cpu_state cpu;
    std::optional<std::array<std::byte, 512>> fx_state;  // FXSAVE's format
    int signal = 0;
    int pid = 0;
};

/// Picks the memory of a core file: whole pages of the `regions` (sorted, disjoint) that the guest
/// can read, taking the `wanted` ranges in order, each as far as `budget` bytes go; a page already
/// taken costs nothing again, and the first page that does not fit ends the choice. Returns the pages
/// taken as runs within one region each, in address order. `pages` is the memory's size in pages.
std::vector<core_segment> choose_segments(std::span<const mem::region> regions, std::span<const memory_range> wanted,
                                          std::uint64_t budget, std::uint64_t pages);

/// The most segments choose_segments() can return for these counts: each wanted range can split a
/// region's run at its two ends, the budget at one more place.
inline std::size_t max_segments(std::size_t regions, std::size_t wanted) noexcept { return regions + 2 * wanted + 1; }

/// Bytes before the first segment's data, page-rounded: the ELF header, one PT_NOTE and
/// `segments` PT_LOAD headers, and the notes.
std::uint64_t core_header_bytes(std::span<const core_note> notes, std::size_t segments) noexcept;

/// Writes an ELF64 ET_CORE file to `fd` (empty, opened for writing): PT_NOTE with `notes`, then one
/// PT_LOAD per segment with its bytes from `memory`, from file offset core_header_bytes(notes,
/// max_segments) on, page-aligned. Throws std::system_error on a failed write.
void write_core_file(int fd, std::span<const core_note> notes, std::span<const core_segment> segments,
                     std::size_t reserved_segments, const mem::guest_memory& memory);

/// NT_AUXV: the (type, value) pairs, then AT_NULL.
core_note auxv_note(std::span<const std::pair<std::uint64_t, std::uint64_t>> auxv);

/// The architecture's part (x86_64_core_notes.cpp): its ELF machine, and the notes a debugger reads
/// a thread's registers and the process from: NT_PRSTATUS, NT_PRPSINFO naming `program`, and
/// NT_FPREGSET when the thread's x87/SSE registers are known.
std::uint16_t core_machine() noexcept;
std::vector<core_note> thread_notes(const core_thread& thread, std::string_view program);

}  // namespace hl::detail
