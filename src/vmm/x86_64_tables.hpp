// SPDX-License-Identifier: Apache-2.0
// The x86-64 structures the host writes into guest memory: GDT, TSS with its I/O permission bitmap,
// identity-mapping page tables, and the entry stub with its register image. No ioctls here.
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

/// Writes the entry stub at `stub`: CPL3 code that loads the extended registers (x87, SSE, AVX,
/// AVX-512: every XSAVE component the guest has) from the image at `image` with `xrstor`, then jumps
/// to `entry`. It reads no general register the host staged and leaves RAX and RDX 0, so a call staged
/// at `stub` starts at `entry` exactly as one staged there would, with the image's registers. A restore
/// that leaves these registers to the guest (vm::fpu_restore::by_guest) makes the next call enter here:
/// a few instructions at native speed instead of a KVM_SET_XSAVE, which costs most of a restore on PVM.
/// `image` must be the page after `stub`.
void write_entry_stub(mem::guest_memory& memory, mem::gpa stub, mem::gpa image, mem::gpa entry);

/// Puts `xsave` (KVM's XSAVE bytes, in the standard format) at `image` for the entry stub, holding only
/// the components in `xcr0` (xrstor refuses an image that holds others).
void write_register_image(mem::guest_memory& memory, mem::gpa image, std::span<const std::byte> xsave,
                          std::uint64_t xcr0);

}  // namespace hl::vmm::x86_64
