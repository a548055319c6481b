// SPDX-License-Identifier: Apache-2.0
// The dynamic section of a static-PIE guest: where its RELA table is, and the refusal of anything
// that would need a dynamic linker.
#include <algorithm>

#include "hl/error.hpp"
#include "loader/elf_checks.hpp"

namespace hl::loader::elf {

[[noreturn]] void fail(const std::string& what) { throw error(errc::invalid_guest, "invalid guest ELF: " + what); }

std::string hex(std::uint64_t value) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    do {
        out.insert(out.begin(), digits[value & 0xf]);
        value >>= 4;
    } while (value != 0);
    return "0x" + out;
}

std::string describe(std::size_t index, const char* type) {
    return "program header " + std::to_string(index) + " (" + type + ")";
}

/// Maps [vaddr, vaddr + size) to the file offset of the same bytes, if all of them are file-backed.
std::optional<std::uint64_t> file_offset_of(std::span<const pt_load> loads, std::uint64_t vaddr, std::uint64_t size) {
    for (const auto& l : loads) {
        if (vaddr >= l.phdr.p_vaddr && fits(vaddr - l.phdr.p_vaddr, size, l.phdr.p_filesz)) {
            return l.phdr.p_offset + (vaddr - l.phdr.p_vaddr);
        }
    }
    return std::nullopt;
}

rela_table read_dynamic(std::span<const std::byte> file, std::size_t index, const Elf64_Phdr& dyn,
                        std::span<const pt_load> loads, bool allow_plt) {
    const auto what = describe(index, "PT_DYNAMIC");
    const auto inside = std::ranges::find_if(loads, [&](const pt_load& l) {
        return dyn.p_offset >= l.phdr.p_offset && fits(dyn.p_offset - l.phdr.p_offset, dyn.p_filesz, l.phdr.p_filesz);
    });
    if (inside == loads.end()) {
        fail(what + ": file bytes [" + hex(dyn.p_offset) + ", +" + hex(dyn.p_filesz) +
             ") are not inside the file bytes of any PT_LOAD");
    }
    if (dyn.p_vaddr - inside->phdr.p_vaddr != dyn.p_offset - inside->phdr.p_offset) {
        fail(what + ": p_vaddr " + hex(dyn.p_vaddr) + " does not match p_offset " + hex(dyn.p_offset) +
             " within program header " + std::to_string(inside->index));
    }

    std::optional<std::uint64_t> rela, relasz, relaent;
    std::uint64_t pltrelsz = 0;
    std::optional<std::uint64_t> jmprel, pltrel;
    bool terminated = false;
    for (std::uint64_t i = 0; i < dyn.p_filesz / sizeof(Elf64_Dyn) && !terminated; ++i) {
        const auto entry = [i] { return "dynamic entry " + std::to_string(i); };
        const auto d = read_struct<Elf64_Dyn>(file, dyn.p_offset + i * sizeof(Elf64_Dyn), entry);
        const auto set_once = [&](std::optional<std::uint64_t>& slot, const char* name) {
            if (slot) fail(entry() + ": " + name + " appears more than once");
            slot = d.d_un.d_val;
        };
        switch (d.d_tag) {
        case DT_NULL: terminated = true; break;
        case DT_NEEDED: fail(entry() + ": DT_NEEDED: the guest depends on a shared library; link it with -static-pie");
        case DT_REL:
        case DT_RELSZ:
        case DT_RELENT:
            fail(entry() + ": the guest uses REL relocations (DT_REL/DT_RELSZ/DT_RELENT); only RELA is supported");
        case DT_RELR:
        case DT_RELRSZ:
        case DT_RELRENT:
            fail(entry() + ": the guest uses packed DT_RELR relocations; link without -z pack-relative-relocs");
        case DT_TEXTREL: fail(entry() + ": DT_TEXTREL: the guest needs relocations in read-only code");
        case DT_FLAGS:
            if (d.d_un.d_val & DF_TEXTREL)
                fail(entry() + ": DT_FLAGS has DF_TEXTREL: the guest needs relocations in read-only code");
            break;
        case DT_RELA: set_once(rela, "DT_RELA"); break;
        case DT_RELASZ: set_once(relasz, "DT_RELASZ"); break;
        case DT_RELAENT: set_once(relaent, "DT_RELAENT"); break;
        case DT_PLTRELSZ: pltrelsz = d.d_un.d_val; break;
        case DT_JMPREL: set_once(jmprel, "DT_JMPREL"); break;
        case DT_PLTREL: set_once(pltrel, "DT_PLTREL"); break;
        default: break;
        }
    }
    if (!terminated) fail(what + ": the dynamic section has no DT_NULL terminator");
    rela_table plt;
    if (pltrelsz != 0 && allow_plt) {
        if (!jmprel) fail("DT_PLTRELSZ " + hex(pltrelsz) + " is given without DT_JMPREL");
        if (pltrel.value_or(DT_RELA) != DT_RELA) fail("DT_PLTREL is not DT_RELA: only RELA is supported");
        if (pltrelsz % sizeof(Elf64_Rela) != 0) fail("DT_PLTRELSZ " + hex(pltrelsz) + " is not a multiple of 24");
        const auto at = file_offset_of(loads, *jmprel, pltrelsz);
        if (!at) fail("the PLT RELA table [" + hex(*jmprel) + ", +" + hex(pltrelsz) + ") is not inside a PT_LOAD's file bytes");
        plt.plt_file_offset = *at;
        plt.plt_count = pltrelsz / sizeof(Elf64_Rela);
    } else if (pltrelsz != 0) {
        fail("the guest has PLT relocations (DT_JMPREL, DT_PLTRELSZ " + hex(pltrelsz) +
             "); static-PIE guests must not need lazy binding");
    }
    if (relaent && *relaent != sizeof(Elf64_Rela)) {
        fail("DT_RELAENT is " + std::to_string(*relaent) + ", expected " + std::to_string(sizeof(Elf64_Rela)));
    }
    if (!rela) {
        if (relasz.value_or(0) != 0) fail("DT_RELASZ " + hex(*relasz) + " is given without DT_RELA");
        return plt;
    }
    if (!relasz) fail("DT_RELA " + hex(*rela) + " is given without DT_RELASZ");
    if (*relasz % sizeof(Elf64_Rela) != 0) {
        fail("DT_RELASZ " + hex(*relasz) + " is not a multiple of the " + std::to_string(sizeof(Elf64_Rela)) +
             "-byte RELA entry");
    }
    const auto offset = file_offset_of(loads, *rela, *relasz);
    if (!offset) {
        fail("the RELA table [" + hex(*rela) + ", +" + hex(*relasz) +
             ") is not inside the file-backed part of a PT_LOAD");
    }
    return {*offset, *relasz / sizeof(Elf64_Rela), plt.plt_file_offset, plt.plt_count};
}

}  // namespace hl::loader::elf
