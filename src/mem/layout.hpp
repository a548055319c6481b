// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hl/config.hpp"
#include "mem/address.hpp"

namespace hl::mem {

/// How the guest may use a page. `user` clear means supervisor-only: the CPL3 guest cannot touch it.
enum class perms : std::uint8_t { none = 0, read = 1, write = 2, execute = 4, user = 8 };
constexpr perms operator|(perms a, perms b) noexcept { return perms(std::uint8_t(a) | std::uint8_t(b)); }
constexpr bool has(perms set, perms bit) noexcept { return (std::uint8_t(set) & std::uint8_t(bit)) != 0; }

/// A named, page-aligned range of guest memory with one set of permissions.
struct region {
    std::string name;
    gpa begin;
    std::uint64_t size = 0;
    perms access = perms::none;

    gpa end() const noexcept { return begin + size; }
    bool contains(gpa a) const noexcept { return a >= begin && a < end(); }
};

/// Where everything lives in a sandbox's guest memory, computed from the configuration in one place.
/// From address 0 up:
///
///   null page (unmapped) | GDT | TSS + I/O bitmap | PEB | entry stub | register image | [kernel state] |
///   page tables | guest image | heap | input buffer | output buffer | stack guard (unmapped) | stack
///
/// The kernel state (only for Linux programs: the emulated kernel's brk and mmap bookkeeping, kept in
/// guest memory so that snapshots carry it), GDT, TSS and page tables are supervisor-only; the PEB, the
/// entry stub, the register image and the input buffer are read-only to the guest; nothing but the
/// image's code segments and the entry stub (host-written code that a call enters through after a
/// restore, see vmm::x86_64::write_entry_stub) is executable.
class layout {
public:
    /// Validates `config` and lays out memory for an image of `image_size` bytes (page-rounded).
    /// Throws hl::error(errc::invalid_config) naming the field that is out of range.
    static layout compute(const sandbox_config& config, std::uint64_t image_size, std::uint64_t kernel_state_size = 0);

    gpa gdt() const noexcept { return gdt_; }
    gpa tss() const noexcept { return tss_; }
    gpa peb() const noexcept { return peb_; }
    gpa entry_stub() const noexcept { return entry_stub_; }
    /// The extended registers the entry stub loads: the last snapshot's (a page).
    gpa register_image() const noexcept { return register_image_; }
    gpa kernel_state() const noexcept { return kernel_state_; }
    std::uint64_t kernel_state_size() const noexcept { return kernel_state_size_; }
    gpa page_tables() const noexcept { return page_tables_; }
    std::uint64_t page_table_pages() const noexcept { return page_table_pages_; }
    gpa image() const noexcept { return image_; }
    std::uint64_t image_size() const noexcept { return image_size_; }
    gpa heap() const noexcept { return heap_; }
    std::uint64_t heap_size() const noexcept { return heap_size_; }
    gpa input() const noexcept { return input_; }
    std::uint64_t input_size() const noexcept { return input_size_; }
    gpa output() const noexcept { return output_; }
    std::uint64_t output_size() const noexcept { return output_size_; }
    gpa stack_guard() const noexcept { return stack_guard_; }
    gpa stack() const noexcept { return stack_; }
    std::uint64_t stack_size() const noexcept { return stack_size_; }
    gpa stack_top() const noexcept { return stack_ + stack_size_; }
    std::uint64_t total_size() const noexcept { return total_size_; }

    /// Every mapped region except the image (whose pages take the permissions of its ELF segments),
    /// in address order.
    std::vector<region> fixed_regions() const;

    bool operator==(const layout&) const noexcept = default;

private:
    layout() = default;

    gpa gdt_, tss_, peb_, entry_stub_, register_image_, kernel_state_, page_tables_, image_, heap_, input_, output_, stack_guard_, stack_;
    std::uint64_t kernel_state_size_ = 0, page_table_pages_ = 0, image_size_ = 0, heap_size_ = 0, input_size_ = 0, output_size_ = 0,
                  stack_size_ = 0, total_size_ = 0;
};

/// Number of 4 KiB page-table pages (PML4, PDPTs, PDs, PTs) needed to map `bytes` from address 0.
std::uint64_t page_table_pages_for(std::uint64_t bytes) noexcept;

}  // namespace hl::mem
