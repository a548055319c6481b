// SPDX-License-Identifier: Apache-2.0
#include "vmm/x86_64_tables.hpp"

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <stdexcept>

namespace hl::vmm::x86_64 {
namespace {

constexpr std::uint64_t pte_present = 1ull << 0;
constexpr std::uint64_t pte_write = 1ull << 1;
constexpr std::uint64_t pte_user = 1ull << 2;
constexpr std::uint64_t pte_accessed = 1ull << 5;
constexpr std::uint64_t pte_dirty = 1ull << 6;
constexpr std::uint64_t pte_nx = 1ull << 63;
constexpr std::uint64_t pte_addr_mask = 0x000f'ffff'ffff'f000ull;

// Upper levels allow everything; the leaf decides. Accessed is preset at every level and dirty at the
// leaf so that the page walker never writes to the tables: they stay clean for dirty-page tracking.
constexpr std::uint64_t table_entry_flags = pte_present | pte_write | pte_user | pte_accessed;

constexpr std::uint64_t tss_size = 0x68;

// The XSAVE area's header follows the 512-byte legacy region: XSTATE_BV, XCOMP_BV, then reserved
// bytes that must be zero. XCOMP_BV 0 is the standard (uncompacted) format xrstor reads.
constexpr std::size_t xsave_header = 512, xsave_header_size = 64;
constexpr std::size_t xsave_area_size = 4096;  // kvm_xsave's region
constexpr std::uint64_t tss_iomap_offset_field = 0x66;

std::uint64_t segment_descriptor(std::uint8_t type, std::uint8_t dpl, bool long_mode, bool big) {
    const std::uint64_t access = (1u << 7) /*present*/ | (std::uint64_t(dpl) << 5) | (1u << 4) /*code/data*/ | type;
    const std::uint64_t flags = (1u << 3) /*4 KiB granularity*/ | (big ? 1u << 2 : 0) | (long_mode ? 1u << 1 : 0);
    return 0xffffull | (access << 40) | (0xfull << 48) | (flags << 52);
}

class table_writer {
public:
    table_writer(std::span<std::byte> tables, std::uint64_t base) : tables_(tables), base_(base) {
        std::memset(tables_.data(), 0, tables_.size());
        next_ = 1;  // page 0 is the PML4
    }

    void map(std::uint64_t address, std::uint64_t leaf) {
        std::uint64_t table = 0;
        for (int shift = 39; shift > 12; shift -= 9) table = child(table, (address >> shift) & 511);
        store(table, (address >> 12) & 511, (address & pte_addr_mask) | leaf);
    }

private:
    std::uint64_t load(std::uint64_t page, std::uint64_t index) const {
        std::uint64_t v;
        std::memcpy(&v, tables_.data() + page * mem::page_size + index * 8, 8);
        return v;
    }
    void store(std::uint64_t page, std::uint64_t index, std::uint64_t v) {
        std::memcpy(tables_.data() + page * mem::page_size + index * 8, &v, 8);
    }
    std::uint64_t child(std::uint64_t page, std::uint64_t index) {
        const std::uint64_t entry = load(page, index);
        if (entry & pte_present) return ((entry & pte_addr_mask) - base_) / mem::page_size;
        if (next_ * mem::page_size >= tables_.size()) throw std::logic_error("page-table area too small for the layout");
        const std::uint64_t fresh = next_++;
        store(page, index, (base_ + fresh * mem::page_size) | table_entry_flags);
        return fresh;
    }

    std::span<std::byte> tables_;
    std::uint64_t base_;
    std::uint64_t next_;
};

}  // namespace

cpu_setup write_descriptor_tables(mem::guest_memory& memory, mem::gpa gdt, mem::gpa tss, std::uint16_t first_port,
                                  std::uint16_t last_port) {
    // The I/O bitmap covers ports 0 .. last_port (one bit each, set = denied), then one all-ones byte the
    // CPU may read when a multi-byte access straddles the end. Ports past the TSS limit are denied.
    const std::uint64_t bitmap_bytes = last_port / 8u + 1u;
    const std::uint32_t tss_limit = static_cast<std::uint32_t>(tss_size + bitmap_bytes + 1 - 1);

    auto t = memory.writable(tss, mem::page_size);
    std::memset(t.data(), 0, t.size());
    const std::uint16_t iomap_base = tss_size;
    std::memcpy(t.data() + tss_iomap_offset_field, &iomap_base, 2);
    auto* bitmap = reinterpret_cast<unsigned char*>(t.data() + tss_size);
    std::memset(bitmap, 0xff, bitmap_bytes + 1);
    for (unsigned port = first_port; port <= last_port; ++port) bitmap[port / 8] &= static_cast<unsigned char>(~(1u << (port % 8)));

    const std::uint64_t tss_lo = (tss_limit & 0xffffull) | ((tss.value & 0xffffffull) << 16) | (0x89ull << 40) |
                                 ((std::uint64_t(tss_limit) >> 16 & 0xf) << 48) | ((tss.value >> 24 & 0xff) << 56);
    const std::uint64_t tss_hi = tss.value >> 32;
    const std::uint64_t entries[] = {
        0,
        segment_descriptor(0xb, 3, true, false),  // 0x08: 64-bit code, execute/read, accessed
        segment_descriptor(0x3, 3, false, true),  // 0x10: data, read/write, accessed
        tss_lo,                                   // 0x18: 64-bit TSS (16 bytes)
        tss_hi,
    };
    auto g = memory.writable(gdt, mem::page_size);
    std::memset(g.data(), 0, g.size());
    std::memcpy(g.data(), entries, sizeof entries);

    return cpu_setup{
        .gdt_base = gdt.value,
        .gdt_limit = static_cast<std::uint16_t>(sizeof entries - 1),
        .tss_base = tss.value,
        .tss_limit = tss_limit,
        .cr3 = 0,
    };
}

std::uint64_t write_page_tables(mem::guest_memory& memory, mem::gpa tables, std::uint64_t pages,
                                std::span<const mem::region> regions) {
    table_writer writer(memory.writable(tables, pages * mem::page_size), tables.value);
    for (const auto& r : regions) {
        if (!mem::has(r.access, mem::perms::read)) continue;
        std::uint64_t leaf = pte_present | pte_accessed | pte_dirty;
        if (mem::has(r.access, mem::perms::write)) leaf |= pte_write;
        if (mem::has(r.access, mem::perms::user)) leaf |= pte_user;
        if (!mem::has(r.access, mem::perms::execute)) leaf |= pte_nx;
        for (std::uint64_t a = r.begin.value; a < r.end().value; a += mem::page_size) writer.map(a, leaf);
    }
    return tables.value;
}

void write_entry_stub(mem::guest_memory& memory, mem::gpa stub, mem::gpa image, mem::gpa entry) {
    if (image != stub + mem::page_size) throw std::logic_error("the register image must follow the entry stub");
    // RIP-relative operands: the image one page on, the entry address in the stub's own page.
    constexpr std::size_t after_xrstor = 18, after_jmp = 34, target = 40;
    const auto image_disp = static_cast<std::int32_t>(mem::page_size - after_xrstor);
    const auto target_disp = static_cast<std::int32_t>(target - after_jmp);
    std::byte code[target + 8] = {};
    std::size_t at = 0;
    auto put = [&](std::initializer_list<std::uint8_t> bytes) {
        for (auto b : bytes) code[at++] = std::byte{b};
    };
    auto put32 = [&](std::int32_t v) {
        std::memcpy(code + at, &v, 4);
        at += 4;
    };
    put({0xb8, 0xff, 0xff, 0xff, 0xff});  // mov eax, -1     every component: xrstor takes
    put({0xba, 0xff, 0xff, 0xff, 0xff});  // mov edx, -1     those of XCR0
    put({0x48, 0x0f, 0xae, 0x2d});        // xrstor64 [rip + image]
    put32(image_disp);
    put({0xb8, 0, 0, 0, 0});              // mov eax, 0      as the host staged them (no flags
    put({0xba, 0, 0, 0, 0});              // mov edx, 0      change, unlike xor)
    put({0xff, 0x25});                    // jmp qword [rip + target]
    put32(target_disp);
    if (at != after_jmp) throw std::logic_error("entry stub encoding");
    std::memcpy(code + target, &entry.value, 8);
    memory.write_bytes(stub, code);
}

void write_register_image(mem::guest_memory& memory, mem::gpa image, std::span<const std::byte> xsave,
                          std::uint64_t xcr0) {
    if (xsave.size() != xsave_area_size) throw std::logic_error("an XSAVE image is kvm_xsave's 4 KiB");
    auto out = memory.writable(image, xsave_area_size);
    std::memcpy(out.data(), xsave.data(), xsave_area_size);
    std::uint64_t xstate_bv = 0;
    std::memcpy(&xstate_bv, out.data() + xsave_header, 8);
    xstate_bv &= xcr0;
    std::memset(out.data() + xsave_header, 0, xsave_header_size);
    std::memcpy(out.data() + xsave_header, &xstate_bv, 8);
}

}  // namespace hl::vmm::x86_64
