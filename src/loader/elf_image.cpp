// SPDX-License-Identifier: Apache-2.0
#include "loader/elf_image.hpp"

#include "hl/error.hpp"
#include "hl/abi/hl_abi.h"
#include "loader/elf_checks.hpp"
#include "mem/address.hpp"
#include "mem/guest_memory.hpp"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace hl::loader {
namespace {

using elf::describe;
using elf::fail;
using elf::fits;
using elf::hex;
using elf::pt_load;
using elf::read_struct;

using mem::page_round_down;
using mem::page_round_up;
using mem::page_size;

std::string machine_name(unsigned machine) {
    switch (machine) {
    case EM_386: return "i386";
    case EM_ARM: return "32-bit ARM";
    case EM_AARCH64: return "AArch64";
    case EM_RISCV: return "RISC-V";
    case EM_PPC64: return "PowerPC 64";
    case EM_S390: return "s390";
    case EM_MIPS: return "MIPS";
    case EM_LOONGARCH: return "LoongArch";
    default: return "an unknown machine";
    }
}

std::string relocation_name(std::uint32_t type) {
    switch (type) {
    case R_X86_64_64: return "R_X86_64_64";
    case R_X86_64_PC32: return "R_X86_64_PC32";
    case R_X86_64_COPY: return "R_X86_64_COPY";
    case R_X86_64_GLOB_DAT: return "R_X86_64_GLOB_DAT";
    case R_X86_64_JUMP_SLOT: return "R_X86_64_JUMP_SLOT";
    case R_X86_64_RELATIVE: return "R_X86_64_RELATIVE";
    case R_X86_64_DTPMOD64: return "R_X86_64_DTPMOD64";
    case R_X86_64_DTPOFF64: return "R_X86_64_DTPOFF64";
    case R_X86_64_TPOFF64: return "R_X86_64_TPOFF64";
    case R_X86_64_IRELATIVE: return "R_X86_64_IRELATIVE";
    default: return "type " + std::to_string(type);
    }
}

Elf64_Ehdr read_header(std::span<const std::byte> file) {
    if (file.size() < sizeof(Elf64_Ehdr)) {
        fail("the file is " + std::to_string(file.size()) + " bytes, too small for the " +
             std::to_string(sizeof(Elf64_Ehdr)) + "-byte ELF64 header");
    }
    const auto h = read_struct<Elf64_Ehdr>(file, 0, [] { return std::string("the ELF header"); });
    if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0) fail("bad magic: the file is not an ELF binary");
    if (h.e_ident[EI_CLASS] != ELFCLASS64) {
        fail(h.e_ident[EI_CLASS] == ELFCLASS32
                 ? std::string("it is a 32-bit ELF (ELFCLASS32); guests must be ELF64 x86-64")
                 : "unknown ELF class " + std::to_string(h.e_ident[EI_CLASS]));
    }
    if (h.e_ident[EI_DATA] != ELFDATA2LSB) {
        fail(h.e_ident[EI_DATA] == ELFDATA2MSB ? std::string("it is big-endian (ELFDATA2MSB); x86-64 is little-endian")
                                               : "unknown ELF data encoding " + std::to_string(h.e_ident[EI_DATA]));
    }
    if (h.e_ident[EI_VERSION] != EV_CURRENT || h.e_version != EV_CURRENT) {
        fail("unsupported ELF version " + std::to_string(h.e_version) + " (ident " +
             std::to_string(h.e_ident[EI_VERSION]) + "), expected 1");
    }
    if (h.e_machine != EM_X86_64) {
        fail("built for " + machine_name(h.e_machine) + " (machine " + std::to_string(h.e_machine) +
             "), expected x86-64 (machine " + std::to_string(EM_X86_64) + ")");
    }
    if (h.e_type != ET_DYN) {
        const std::string kind = h.e_type == ET_EXEC   ? "a fixed-address executable (ET_EXEC)"
                                 : h.e_type == ET_REL  ? "a relocatable object (ET_REL)"
                                 : h.e_type == ET_CORE ? "a core dump (ET_CORE)"
                                                       : "of ELF type " + std::to_string(h.e_type);
        fail("it is " + kind + "; guests must be static-PIE (ET_DYN), linked with -static-pie");
    }
    if (h.e_phentsize != sizeof(Elf64_Phdr)) {
        fail("e_phentsize is " + std::to_string(h.e_phentsize) + ", expected " + std::to_string(sizeof(Elf64_Phdr)));
    }
    if (h.e_phnum == PN_XNUM) fail("extended program header numbering (e_phnum == PN_XNUM) is not supported");
    if (!fits(h.e_phoff, std::uint64_t{h.e_phnum} * sizeof(Elf64_Phdr), file.size())) {
        fail("the " + std::to_string(h.e_phnum) + " program headers at file offset " + hex(h.e_phoff) +
             " extend past the end of the " + std::to_string(file.size()) + "-byte file");
    }
    return h;
}

pt_load check_load(std::size_t index, const Elf64_Phdr& p, std::uint64_t file_size) {
    const auto what = describe(index, "PT_LOAD");
    if (p.p_filesz > p.p_memsz) {
        fail(what + ": p_filesz " + hex(p.p_filesz) + " exceeds p_memsz " + hex(p.p_memsz));
    }
    if (!fits(p.p_offset, p.p_filesz, file_size)) {
        fail(what + ": file bytes [" + hex(p.p_offset) + ", +" + hex(p.p_filesz) + ") lie outside the " +
             std::to_string(file_size) + "-byte file");
    }
    if (!fits(p.p_vaddr, p.p_memsz, max_image_size)) {
        fail(what + ": memory [" + hex(p.p_vaddr) + ", +" + hex(p.p_memsz) + ") reaches past the " +
             hex(max_image_size) + "-byte image limit");
    }
    if (p.p_vaddr % page_size != p.p_offset % page_size) {
        fail(what + ": p_vaddr " + hex(p.p_vaddr) + " and p_offset " + hex(p.p_offset) +
             " are not congruent modulo the 4 KiB page size");
    }
    if ((p.p_flags & PF_W) && (p.p_flags & PF_X)) {
        fail(what + " at " + hex(p.p_vaddr) + " is both writable and executable (W^X)");
    }
    access perms{};
    if (p.p_flags & PF_R) perms = perms | access::read;
    if (p.p_flags & PF_W) perms = perms | access::write;
    if (p.p_flags & PF_X) perms = perms | access::execute;
    return {index, p, page_round_down(p.p_vaddr), page_round_up(p.p_vaddr + p.p_memsz), perms};
}

/// The load whose page span holds `page`, or nullptr. `loads` is sorted and non-overlapping.
const pt_load* load_at(std::span<const pt_load> loads, std::uint64_t page) {
    auto it = std::upper_bound(loads.begin(), loads.end(), page,
                               [](std::uint64_t p, const pt_load& l) { return p < l.page_begin; });
    if (it == loads.begin()) return nullptr;
    --it;
    return page < it->page_end ? &*it : nullptr;
}

/// Half-open page range [begin, end) that PT_GNU_RELRO makes read-only after relocation.
struct page_range {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
    bool contains(std::uint64_t page) const noexcept { return page >= begin && page < end; }
};

page_range check_relro(std::size_t index, const Elf64_Phdr& p, std::span<const pt_load> loads,
                       std::uint64_t image_size) {
    const auto what = describe(index, "PT_GNU_RELRO");
    if (!fits(p.p_vaddr, p.p_memsz, image_size)) {
        fail(what + ": [" + hex(p.p_vaddr) + ", +" + hex(p.p_memsz) + ") reaches past the image end " +
             hex(image_size));
    }
    // Both ends round down, as glibc's _dl_protect_relro does: the partial page at the end holds
    // ordinary data that must stay writable.
    const page_range range{page_round_down(p.p_vaddr), page_round_down(p.p_vaddr + p.p_memsz)};
    for (const auto& l : loads) {
        if (has(l.perms, access::execute) && range.begin < l.page_end && l.page_begin < range.end) {
            fail(what + ": [" + hex(range.begin) + ", " + hex(range.end) +
                 ") covers pages of the executable program header " + std::to_string(l.index) +
                 "; RELRO would make code non-executable");
        }
    }
    return range;
}

/// The segments of `loads`, with the RELRO pages split off as read-only.
std::vector<segment> make_segments(std::span<const pt_load> loads, page_range relro) {
    std::vector<segment> out;
    const auto add = [&](std::uint64_t begin, std::uint64_t end, access perms) {
        if (begin < end) out.push_back({begin, end - begin, perms});
    };
    for (const auto& l : loads) {
        const auto mid_begin = std::clamp(relro.begin, l.page_begin, l.page_end);
        const auto mid_end = std::clamp(relro.end, mid_begin, l.page_end);
        add(l.page_begin, mid_begin, l.perms);
        add(mid_begin, mid_end, access::read);
        add(mid_end, l.page_end, l.perms);
    }
    return out;
}

/// Where the program headers are in the loaded image (for AT_PHDR): inside a PT_LOAD's file bytes;
/// 0 when no PT_LOAD holds them.
std::uint64_t program_headers_in_memory(const Elf64_Ehdr& h, std::span<const pt_load> loads) {
    const std::uint64_t size = std::uint64_t{h.e_phnum} * sizeof(Elf64_Phdr);
    for (const auto& l : loads) {
        if (h.e_phoff >= l.phdr.p_offset && size <= l.phdr.p_filesz && h.e_phoff - l.phdr.p_offset <= l.phdr.p_filesz - size)
            return l.phdr.p_vaddr + (h.e_phoff - l.phdr.p_offset);
    }
    return 0;
}

/// The guest kind the SDK's note (HL_NOTE_NAME, type HL_NOTE_GUEST_KIND) declares; freestanding
/// when there is none. Notes are read only inside the file bytes of a PT_NOTE, each length checked.
guest_kind read_guest_kind(std::span<const std::byte> file, const Elf64_Ehdr& h) {
    static constexpr char name[] = HL_NOTE_NAME;  // with its NUL, as notes store it
    for (std::size_t i = 0; i < h.e_phnum; ++i) {
        const auto p = read_struct<Elf64_Phdr>(file, h.e_phoff + i * sizeof(Elf64_Phdr),
                                               [i] { return "program header " + std::to_string(i); });
        // A PT_NOTE is never loaded; one outside the file holds no note of ours (Linux ignores it too).
        if (p.p_type != PT_NOTE || !fits(p.p_offset, p.p_filesz, file.size())) continue;
        const std::uint64_t align = p.p_align == 8 ? 8 : 4;
        const auto padded = [align](std::uint64_t n) { return (n + align - 1) / align * align; };
        // The description starts, and the next note starts, at the segment's alignment after the
        // 12-byte header and the name (an 8-aligned GNU property note has a 4-byte name and no gap).
        std::uint64_t at = 0;
        while (p.p_filesz - at >= 12) {
            const auto header = read_struct<std::array<std::uint32_t, 3>>(
                file, p.p_offset + at, [i] { return describe(i, "PT_NOTE") + ": a note header"; });
            const std::uint64_t name_size = header[0], desc_size = header[1], type = header[2];
            const std::uint64_t room = p.p_filesz - at;
            const std::uint64_t desc_at = padded(12 + name_size);  // both sizes are 32-bit: no overflow
            if (desc_at > room || desc_size > room - desc_at) {
                fail(describe(i, "PT_NOTE") + ": the note at " + hex(p.p_offset + at) + " runs past its segment");
            }
            const auto name_at = file.subspan(p.p_offset + at + 12, name_size);
            if (type == HL_NOTE_GUEST_KIND && name_size == sizeof name &&
                std::memcmp(name_at.data(), name, sizeof name) == 0) {
                if (desc_size != 4) fail(describe(i, "PT_NOTE") + ": the Hyperlight guest-kind note is not 4 bytes");
                std::uint32_t kind;
                std::memcpy(&kind, file.data() + p.p_offset + at + desc_at, 4);
                if (kind == HL_GUEST_KIND_LINUX) return guest_kind::linux_program;
                fail("the Hyperlight note names guest kind " + std::to_string(kind) +
                     ", which this library does not know; rebuild the guest with this library's SDK");
            }
            const std::uint64_t next = desc_at + padded(desc_size);
            if (next >= room) break;
            at += next;
        }
    }
    return guest_kind::freestanding;
}

}  // namespace

elf_image elf_image::parse(std::vector<std::byte> file) {
    const auto h = read_header(file);
    const guest_kind kind = read_guest_kind(file, h);

    std::vector<pt_load> loads;
    std::optional<std::pair<std::size_t, Elf64_Phdr>> dynamic, relro;
    for (std::size_t i = 0; i < h.e_phnum; ++i) {
        const auto p = read_struct<Elf64_Phdr>(file, h.e_phoff + i * sizeof(Elf64_Phdr),
                                               [i] { return "program header " + std::to_string(i); });
        switch (p.p_type) {
        case PT_LOAD:
            if (auto l = check_load(i, p, file.size()); p.p_memsz != 0) loads.push_back(l);
            break;
        case PT_INTERP:
            fail(describe(i, "PT_INTERP") + ": the guest asks for a dynamic linker; link it with -static-pie");
        case PT_TLS:
            // A Linux program's libc sets up its own TLS block (arch_prctl); the template lies in a PT_LOAD.
            if (kind == guest_kind::linux_program) break;
            // It would link and then fault at its first %fs-relative access: guests have no TLS block.
            fail(describe(i, "PT_TLS") + ": the guest uses thread-local storage (thread_local or __thread), which "
                                         "this guest flavour does not support; make those variables static");
        case PT_DYNAMIC:
            if (dynamic) fail(describe(i, "PT_DYNAMIC") + ": a second PT_DYNAMIC");
            dynamic.emplace(i, p);
            break;
        case PT_GNU_RELRO:
            if (relro) fail(describe(i, "PT_GNU_RELRO") + ": a second PT_GNU_RELRO");
            relro.emplace(i, p);
            break;
        default: break;
        }
    }
    if (loads.empty()) fail("no PT_LOAD segment with a non-zero p_memsz");

    std::ranges::sort(loads, {}, &pt_load::page_begin);
    for (std::size_t i = 1; i < loads.size(); ++i) {
        const auto& a = loads[i - 1];
        const auto& b = loads[i];
        if (b.page_begin < a.page_end) {
            fail("program headers " + std::to_string(a.index) + " and " + std::to_string(b.index) +
                 " (PT_LOAD) both map the page at " + hex(b.page_begin) + "; their permissions would be ambiguous");
        }
    }

    elf_image image;
    image.image_size_ = loads.back().page_end;

    const bool entry_ok = std::ranges::any_of(loads, [&](const pt_load& l) {
        return has(l.perms, access::execute) && h.e_entry >= l.phdr.p_vaddr &&
               h.e_entry - l.phdr.p_vaddr < l.phdr.p_memsz;
    });
    if (!entry_ok) fail("the entry point " + hex(h.e_entry) + " is not inside an executable PT_LOAD");
    image.entry_offset_ = h.e_entry;

    const auto relro_pages = relro ? check_relro(relro->first, relro->second, loads, image.image_size_) : page_range{};
    const bool self_relocating = kind == guest_kind::linux_program;
    const auto table = dynamic ? elf::read_dynamic(file, dynamic->first, dynamic->second, loads, self_relocating)
                               : elf::rela_table{};

    // The tables lie inside the file (read_dynamic checked), so this reservation is bounded by its size.
    if (!self_relocating) image.relocations_.reserve(table.count);
    for (std::uint64_t i = 0; i < table.count + table.plt_count; ++i) {
        const bool plt = i >= table.count;
        const auto entry = [i, plt, &table] {
            return plt ? "PLT relocation " + std::to_string(i - table.count) : "relocation " + std::to_string(i);
        };
        const std::uint64_t at = plt ? table.plt_file_offset + (i - table.count) * sizeof(Elf64_Rela)
                                     : table.file_offset + i * sizeof(Elf64_Rela);
        const auto r = read_struct<Elf64_Rela>(file, at, entry);
        const auto type = static_cast<std::uint32_t>(ELF64_R_TYPE(r.r_info));
        if (type == R_X86_64_NONE) continue;
        const auto where = [&] {
            return entry() + " (" + relocation_name(type) + " at offset " + hex(r.r_offset) + ")";
        };
        if (type != R_X86_64_RELATIVE && !(self_relocating && type == R_X86_64_IRELATIVE)) {
            fail(where() + (self_relocating ? ": only R_X86_64_RELATIVE and R_X86_64_IRELATIVE relocations are supported"
                                            : ": only R_X86_64_RELATIVE relocations are supported"));
        }
        if (ELF64_R_SYM(r.r_info) != 0) {
            fail(where() + ": refers to symbol " + std::to_string(ELF64_R_SYM(r.r_info)) + ", expected none (0)");
        }
        if (!fits(r.r_offset, sizeof(std::uint64_t), image.image_size_)) {
            fail(where() + ": the 8-byte target lies outside the " + hex(image.image_size_) + "-byte image");
        }
        // An 8-byte target may straddle two pages; both must be writable until RELRO applies.
        for (const auto page : {page_round_down(r.r_offset), page_round_down(r.r_offset + 7)}) {
            const auto* l = load_at(loads, page);
            if (!l || !(has(l->perms, access::write) || relro_pages.contains(page))) {
                fail(where() + ": the target page " + hex(page) + " is not in a writable segment or RELRO");
            }
        }
        // A static-PIE Linux program relocates itself at start (glibc's _dl_relocate_static_pie,
        // musl's _dlstart): the loader checks its relocations but applies none.
        if (!self_relocating) image.relocations_.push_back({r.r_offset, static_cast<std::uint64_t>(r.r_addend)});
    }

    for (const auto& l : loads) {
        if (l.phdr.p_filesz != 0) image.copies_.push_back({l.phdr.p_offset, l.phdr.p_vaddr, l.phdr.p_filesz});
    }
    // The program's own relocation writes the RELRO pages, so they keep their PT_LOAD's permissions.
    image.segments_ = make_segments(loads, kind == guest_kind::linux_program ? page_range{} : relro_pages);
    image.kind_ = kind;
    image.phdr_offset_ = program_headers_in_memory(h, loads);
    image.phdr_count_ = h.e_phnum;
    image.file_ = std::move(file);
    return image;
}

template <class Writable>
void elf_image::write_contents(Writable&& writable, std::uint64_t base) const {
    if (base % page_size != 0)
        throw std::invalid_argument("elf_image::load: base " + hex(base) + " is not page-aligned");
    for (const auto& c : copies_) {
        if (!fits(c.file_offset, c.size, file_.size()) || !fits(c.image_offset, c.size, image_size_)) {
            fail("a PT_LOAD copy [" + hex(c.image_offset) + ", +" + hex(c.size) + ") is out of bounds");
        }
        std::memcpy(writable(c.image_offset, c.size).data(), file_.data() + c.file_offset, c.size);
    }
    for (const auto& r : relocations_) {
        if (!fits(r.offset, sizeof(std::uint64_t), image_size_)) {
            fail("relocation target " + hex(r.offset) + " lies outside the image");
        }
        const std::uint64_t value = base + r.addend;
        std::memcpy(writable(r.offset, sizeof value).data(), &value, sizeof value);
    }
}

void elf_image::load(mem::guest_memory& memory, mem::gpa at) const {
    if (!memory.contains(at, image_size_)) {
        throw error(errc::protocol_error, "elf_image::load: the " + std::to_string(image_size_) + "-byte image at " +
                                              hex(at.value) + " does not fit in guest memory");
    }
    write_contents([&](std::uint64_t offset, std::uint64_t size) { return memory.writable(at + offset, size); },
                   at.value);
}

void elf_image::load(std::span<std::byte> dest, std::uint64_t base) const {
    if (dest.size() != image_size_) {
        throw std::invalid_argument("elf_image::load: destination is " + std::to_string(dest.size()) +
                                    " bytes, the image needs exactly " + std::to_string(image_size_));
    }
    std::ranges::fill(dest, std::byte{0});
    write_contents([&](std::uint64_t offset, std::uint64_t size) { return dest.subspan(offset, size); }, base);
}

}  // namespace hl::loader
