// SPDX-License-Identifier: Apache-2.0
#include "sandbox/core_file.hpp"

#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mem/page_bitmap.hpp"
#include "util/system_error.hpp"

namespace hl::detail {
namespace {

constexpr char note_name[] = "CORE";  // with its NUL: namesz 5

bool guest_readable(const mem::region& r) {
    return mem::has(r.access, mem::perms::user) && mem::has(r.access, mem::perms::read);
}

constexpr std::uint64_t align4(std::uint64_t n) noexcept { return (n + 3) & ~std::uint64_t{3}; }

std::uint64_t note_bytes(const core_note& n) noexcept {
    return sizeof(Elf64_Nhdr) + align4(sizeof note_name) + align4(n.desc.size());
}

std::uint32_t segment_flags(mem::perms p) noexcept {
    std::uint32_t f = 0;
    if (mem::has(p, mem::perms::read)) f |= PF_R;
    if (mem::has(p, mem::perms::write)) f |= PF_W;
    if (mem::has(p, mem::perms::execute)) f |= PF_X;
    return f;
}

template <class T>
void append(std::vector<std::byte>& out, const T& value) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out.insert(out.end(), p, p + sizeof value);
}

void pad_to(std::vector<std::byte>& out, std::uint64_t size) { out.resize(size, std::byte{0}); }

void write_all(int fd, const std::byte* data, std::uint64_t size, std::uint64_t offset) {
    while (size > 0) {
        const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(size, 1u << 30));
        const ssize_t n = ::pwrite(fd, data, chunk, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw util::system_error(errno, "writing the core file");
        if (n == 0) throw util::system_error(ENOSPC, "writing the core file");
        data += n;
        size -= static_cast<std::uint64_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
}

// Takes the pages from page `first` up to the byte address `end` that are not taken yet, while
// `left` pages last; false once the next page does not fit.
bool take_pages(mem::page_bitmap& taken, std::uint64_t first, std::uint64_t end, std::uint64_t& left) {
    for (std::uint64_t p = first; p * mem::page_size < end && p < taken.pages(); ++p) {
        if (taken.test(p)) continue;
        if (left == 0) return false;
        taken.set(p);
        --left;
    }
    return true;
}

// The taken pages as runs within one region each, in address order.
std::vector<core_segment> runs_of(std::span<const mem::region> regions, const mem::page_bitmap& taken) {
    std::vector<core_segment> out;
    for (const mem::region& r : regions) {
        if (!guest_readable(r)) continue;
        const std::uint64_t last = std::min(r.end().value / mem::page_size, taken.pages());
        for (std::uint64_t p = r.begin.value / mem::page_size; p < last; ++p) {
            if (!taken.test(p)) continue;
            std::uint64_t q = p;
            while (q < last && taken.test(q)) ++q;
            out.push_back({mem::gpa{p * mem::page_size}, (q - p) * mem::page_size, r.access});
            p = q;
        }
    }
    return out;
}

}  // namespace

std::vector<core_segment> choose_segments(std::span<const mem::region> regions, std::span<const memory_range> wanted,
                                          std::uint64_t budget, std::uint64_t pages) {
    mem::page_bitmap taken(pages);
    std::uint64_t left = budget / mem::page_size;
    bool room = true;
    for (std::size_t i = 0; room && i < wanted.size(); ++i) {
        for (std::size_t j = 0; room && j < regions.size(); ++j) {
            const mem::region& r = regions[j];
            if (!guest_readable(r)) continue;
            const std::uint64_t from = std::max(mem::page_round_down(wanted[i].begin), r.begin.value);
            room = take_pages(taken, from / mem::page_size, std::min(wanted[i].end, r.end().value), left);
        }
    }
    return runs_of(regions, taken);
}

std::uint64_t core_header_bytes(std::span<const core_note> notes, std::size_t segments) noexcept {
    std::uint64_t bytes = sizeof(Elf64_Ehdr) + (1 + segments) * sizeof(Elf64_Phdr);
    for (const core_note& n : notes) bytes += note_bytes(n);
    return mem::page_round_up(bytes);
}

void write_core_file(int fd, std::span<const core_note> notes, std::span<const core_segment> segments,
                     std::size_t reserved_segments, const mem::guest_memory& memory) {
    std::vector<std::byte> head;
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
    eh.e_type = ET_CORE;
    eh.e_machine = core_machine();
    eh.e_version = EV_CURRENT;
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<Elf64_Half>(1 + segments.size());
    append(head, eh);

    std::uint64_t notes_size = 0;
    for (const core_note& n : notes) notes_size += note_bytes(n);
    const std::uint64_t notes_at = sizeof(Elf64_Ehdr) + (1 + segments.size()) * sizeof(Elf64_Phdr);
    Elf64_Phdr note_ph{};
    note_ph.p_type = PT_NOTE;
    note_ph.p_offset = notes_at;
    note_ph.p_filesz = notes_size;
    note_ph.p_align = 4;
    append(head, note_ph);

    std::uint64_t data_at = core_header_bytes(notes, std::max(reserved_segments, segments.size()));
    for (const core_segment& s : segments) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = segment_flags(s.access);
        ph.p_offset = data_at;
        ph.p_vaddr = s.begin.value;  // identity-mapped: virtual == physical
        ph.p_paddr = s.begin.value;
        ph.p_filesz = ph.p_memsz = s.size;
        ph.p_align = mem::page_size;
        append(head, ph);
        data_at += s.size;
    }

    for (const core_note& n : notes) {
        Elf64_Nhdr nh{};
        nh.n_namesz = sizeof note_name;
        nh.n_descsz = static_cast<Elf64_Word>(n.desc.size());
        nh.n_type = n.type;
        append(head, nh);
        const auto* name = reinterpret_cast<const std::byte*>(note_name);
        head.insert(head.end(), name, name + sizeof note_name);
        pad_to(head, align4(head.size()));
        head.insert(head.end(), n.desc.begin(), n.desc.end());
        pad_to(head, align4(head.size()));
    }
    write_all(fd, head.data(), head.size(), 0);

    std::uint64_t at = core_header_bytes(notes, std::max(reserved_segments, segments.size()));
    for (const core_segment& s : segments) {
        const auto bytes = memory.span(s.begin, s.size);
        write_all(fd, bytes.data(), bytes.size(), at);
        at += s.size;
    }
    // A core with no memory still ends where its data would start, as its headers say.
    if (segments.empty() && ::ftruncate(fd, static_cast<off_t>(at)) != 0) {
        throw util::system_error(errno, "sizing the core file");
    }
}

core_note auxv_note(std::span<const std::pair<std::uint64_t, std::uint64_t>> auxv) {
    core_note n{NT_AUXV, {}};
    for (const auto& [type, value] : auxv) {
        append(n.desc, type);
        append(n.desc, value);
    }
    append(n.desc, std::uint64_t{AT_NULL});
    append(n.desc, std::uint64_t{0});
    return n;
}

}  // namespace hl::detail
