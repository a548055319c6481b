// SPDX-License-Identifier: Apache-2.0
// The x86-64 structures the host writes into guest memory before the first run: GDT, TSS with its I/O
// permission bitmap, and identity-mapping page tables. No ioctls here.
#pragma once

#include <cstdint>
#include <span>

#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "vmm/cpu_state.hpp"

namespace hl::vmm::x86_64 {

inline constexpr std::uint16_t user_code_selector = 0x08 | 3;
inline constexpr std::uint16_t user_data_selector = 0x10 | 3;
inline constexpr std::uint16_t tss_selector = 0x18;

/// Writes the GDT (null, 64-bit user code, user data, TSS) at `gdt` and the TSS at `tss`, whose I/O
/// bitmap allows exactly the ports in [first_port, last_port]. Returns the values for the vCPU.
cpu_setup write_descriptor_tables(mem::guest_memory& memory, mem::gpa gdt, mem::gpa tss, std::uint16_t first_port,
                                  std::uint16_t last_port);

/// Writes 4-level page tables at [tables, tables + pages * 4 KiB) that identity-map every region with
/// its permissions (4 KiB pages, accessed and dirty bits preset so the CPU never writes to them) and
/// leave everything else unmapped. Returns the CR3 value. Regions must be page-aligned and disjoint.
std::uint64_t write_page_tables(mem::guest_memory& memory, mem::gpa tables, std::uint64_t pages,
                                std::span<const mem::region> regions);

}  // namespace hl::vmm::x86_64
