// SPDX-License-Identifier: Apache-2.0
// The guest side of the exit protocol: `out` to the library's ports, and the output buffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hl/abi/hl_abi.h"

namespace hl::guest::detail {

inline void out32(std::uint16_t port, std::uint32_t value) {
    __asm__ volatile("outl %0, %w1" : : "a"(value), "Nd"(port) : "memory");
}

const hl_peb& peb();

/// Copies a message into the output buffer (header + bytes). Returns false when it does not fit.
bool write_output(const void* data, std::size_t size);

/// Sends pending printf text to the host. Called before every other use of the output buffer.
void flush_output();

/// The PEB the host entered the guest with (HL_OP_INIT).
extern const hl_peb* boot_info;

/// Flushes the libc's stdout and stderr (a Linux flavour); nothing in the freestanding one.
void flush_libc_output();

/// Runs the registered functions' dispatch for HL_OP_DISPATCH.
void dispatch_call();

/// Tells the host the operation is over. The host re-enters the guest for the next one, never here.
[[noreturn]] void finish(std::uint32_t status);

}  // namespace hl::guest::detail
