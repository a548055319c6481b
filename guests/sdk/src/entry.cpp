// SPDX-License-Identifier: Apache-2.0
#include <cstring>

#include "hl/guest.h"
#include "io.hpp"

extern "C" {
void hl_heap_init(void* base, std::size_t size);
extern void (*__init_array_start[])();
extern void (*__init_array_end[])();
[[noreturn]] void hl_entry(const hl_peb* peb, std::uint64_t op);
}

namespace hl::guest::detail {

void dispatch_call();

// Set by hl_entry at HL_OP_INIT (freestanding), or by the Linux flavour's entry (linux_entry.cpp).
const hl_peb* boot_info = nullptr;

const hl_peb& peb() { return *boot_info; }

bool write_output(const void* data, std::size_t size) {
    flush_output();
    const hl_peb& p = peb();
    if (size > p.output_size - HL_BUFFER_HEADER_SIZE) return false;
    auto* out = reinterpret_cast<unsigned char*>(p.output_addr);
    const hl_buffer_header header{size};
    std::memcpy(out, &header, sizeof header);
    std::memcpy(out + HL_BUFFER_HEADER_SIZE, data, size);
    return true;
}

void finish(std::uint32_t status) {
    flush_output();
    flush_libc_output();
    for (;;) out32(HL_PORT_DONE, status);
}

}  // namespace hl::guest::detail

extern "C" const hl_peb* hl_get_peb(void) { return &hl::guest::detail::peb(); }

extern "C" void hl_abort(std::uint32_t code, const char* message) {
    const char* text = message ? message : "";
    std::size_t len = std::strlen(text);
    const hl_peb& p = hl::guest::detail::peb();
    const std::size_t room = p.output_size - HL_BUFFER_HEADER_SIZE;
    if (len > room) len = room;
    hl::guest::detail::write_output(text, len);
    for (;;) hl::guest::detail::out32(HL_PORT_ABORT, code);
}

#ifndef HL_GUEST_LINUX
void hl::guest::detail::flush_libc_output() {}

// The host enters here at CPL3 with a fresh stack for every operation; nothing returns from it.
extern "C" void hl_entry(const hl_peb* peb, std::uint64_t op) {
    using namespace hl::guest::detail;
    if (op == HL_OP_INIT) {
        boot_info = peb;
        if (peb->abi_version != HL_ABI_VERSION) finish(HL_STATUS_INIT_FAILED);
        hl_heap_init(reinterpret_cast<void*>(peb->heap_addr), peb->heap_size);
        for (auto* f = __init_array_start; f != __init_array_end; ++f) (*f)();
        hl_guest_init();
        finish(HL_STATUS_OK);
    }
    if (op == HL_OP_DISPATCH && boot_info != nullptr) {
        dispatch_call();
        finish(HL_STATUS_OK);
    }
    hl_abort(HL_ABORT_PROTOCOL, "unknown operation requested by the host");
}
#endif  // HL_GUEST_LINUX
