// SPDX-License-Identifier: Apache-2.0
#include "vmm/x86_64_tables.hpp"

#include <cstring>
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

}  // namespace hl::vmm::x86_64
