// SPDX-License-Identifier: Apache-2.0
// String `in` that runs into memory the guest cannot write: the stack guard, past the heap, read-only
// pages and the library's own.
#include <cstdint>
#include <cstring>

#include "hostile.hpp"

namespace {

using namespace hostile;

// `rep ins` of `width` bytes per element, `count` elements, into `destination`, forwards or backwards.
void rep_ins_at(std::uint64_t destination, std::uint64_t count, int width, bool backwards) {
    void* d = reinterpret_cast<void*>(destination);
    const auto port = static_cast<std::uint16_t>(HL_PORT_OUTPUT);
    if (backwards) __asm__ volatile("std" ::: "cc");
    if (width == 1) __asm__ volatile("rep insb" : "+D"(d), "+c"(count) : "d"(port) : "memory");
    else if (width == 2) __asm__ volatile("rep insw" : "+D"(d), "+c"(count) : "d"(port) : "memory");
    else __asm__ volatile("rep insl" : "+D"(d), "+c"(count) : "d"(port) : "memory");
    __asm__ volatile("cld" ::: "cc");
}

// Backwards from 12 bytes above the stack's bottom into the stack guard page.
void rep_ins_into_stack_guard(std::int64_t width) {
    const hl_peb* peb = hl_get_peb();
    rep_ins_at(peb->stack_top - peb->stack_size + 12, 1u << 20, static_cast<int>(width), true);
}

// Forwards from 6 bytes below the heap's end into whatever follows it.
void rep_ins_off_heap_end(std::int64_t width) {
    const hl_peb* peb = hl_get_peb();
    rep_ins_at(peb->heap_addr + peb->heap_size - 6, 1u << 20, static_cast<int>(width), false);
}

// Backwards from just above the start of the first writable segment into the read-only page below it
// (found from the ELF program headers the loader placed at the image's start).
std::int64_t first_writable_page() {
    const hl_peb* peb = hl_get_peb();
    const auto* base = reinterpret_cast<const unsigned char*>(peb->image_addr);
    if (std::memcmp(base, "\x7f" "ELF", 4) != 0) return 0;
    std::uint64_t phoff;
    std::uint16_t phentsize, phnum;
    std::memcpy(&phoff, base + 0x20, 8);
    std::memcpy(&phentsize, base + 0x36, 2);
    std::memcpy(&phnum, base + 0x38, 2);
    for (std::uint16_t i = 0; i < phnum; ++i) {
        const unsigned char* ph = base + phoff + std::uint64_t{i} * phentsize;
        std::uint32_t type, flags;
        std::uint64_t vaddr;
        std::memcpy(&type, ph, 4);
        std::memcpy(&flags, ph + 4, 4);
        std::memcpy(&vaddr, ph + 0x10, 8);
        // The first page wholly writable: the segment's start rounded up.
        if (type == 1 && (flags & 2)) return static_cast<std::int64_t>(peb->image_addr + ((vaddr + 4095) & ~4095ull));
    }
    return 0;
}
void rep_ins_down_into_read_only(std::int64_t width) {
    const auto page = static_cast<std::uint64_t>(first_writable_page());
    if (page == 0) hl_abort(1, "no writable segment found");
    rep_ins_at(page + 8, 1u << 20, static_cast<int>(width), true);
}

// `rep insl` of `count` elements at any address: the library's supervisor-only pages (GDT, TSS and its
// I/O bitmap, page tables) and the user read-only ones (PEB, input buffer). KVM's emulator does the
// write at CPL3 and must refuse; if it did not, restore must still undo it.
void rep_ins_to(std::int64_t address, std::int64_t count) {
    rep_ins_at(static_cast<std::uint64_t>(address), static_cast<std::uint64_t>(count), 4, false);
}
std::int64_t input_addr() { return static_cast<std::int64_t>(hl_get_peb()->input_addr); }
std::int64_t peb_checksum() {
    const hl_peb* peb = hl_get_peb();
    return static_cast<std::int64_t>(peb->abi_version ^ peb->input_addr ^ peb->input_size ^ peb->output_addr ^
                                     peb->heap_addr ^ peb->stack_top ^ peb->image_addr);
}

}  // namespace

void hostile::register_string_in_attacks() {
    using hl::guest::register_function;
    register_function<rep_ins_into_stack_guard>("RepInsIntoStackGuard");
    register_function<rep_ins_off_heap_end>("RepInsOffHeapEnd");
    register_function<rep_ins_down_into_read_only>("RepInsDownIntoReadOnly");
    register_function<first_writable_page>("FirstWritablePage");
    register_function<rep_ins_to>("RepInsTo");
    register_function<input_addr>("InputAddr");
    register_function<peb_checksum>("PebChecksum");
}
