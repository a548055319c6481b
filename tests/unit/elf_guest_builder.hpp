// SPDX-License-Identifier: Apache-2.0
// For the ELF loader's unit tests: a synthesized static-PIE guest to parse, load and break.
#pragma once

#include <elf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "hl/error.hpp"
#include "loader/elf_image.hpp"

namespace hl::loader::test {

inline constexpr std::uint64_t rela_offset = 0x200;
inline constexpr std::uint64_t dynamic_offset = 0x3800;
inline constexpr std::uint64_t file_size = 0x4100;
inline constexpr std::uint64_t image_end = 0x6000;
inline constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();

enum ph : std::size_t { ph_headers, ph_text, ph_rodata, ph_data, ph_dynamic, ph_relro, ph_stack };

inline std::byte pattern(std::uint64_t file_offset) { return static_cast<std::byte>(file_offset * 131 + 7); }

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
inline ::testing::AssertionResult rejected(std::vector<std::byte> file, const std::string& says) {
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

inline ::testing::AssertionResult rejected(const guest_builder& b, const std::string& says) {
    return rejected(b.build(), says);
}

inline std::uint64_t read_u64(const std::vector<std::byte>& image, std::uint64_t offset) {
    std::uint64_t value;
    std::memcpy(&value, image.data() + offset, sizeof value);
    return value;
}

}  // namespace hl::loader::test
