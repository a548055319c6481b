// SPDX-License-Identifier: Apache-2.0
// What the hostile guest's files share: raw port writes, the output buffer, and the value a forged
// result is marked with. Each file registers its own attacks.
#pragma once

#include <cstdint>
#include <cstring>

#include "hl/guest.hpp"

namespace hostile {

inline void out32(std::uint16_t port, std::uint32_t value) {
    __asm__ volatile("outl %0, %w1" : : "a"(value), "Nd"(port) : "memory");
}

inline unsigned char* output() { return reinterpret_cast<unsigned char*>(hl_get_peb()->output_addr); }

/// Writes a header claiming `size` into the output buffer and fills what fits of it with `fill`.
inline void set_output(std::uint64_t size, unsigned char fill) {
    std::memcpy(output(), &size, sizeof size);
    const std::uint64_t capacity = hl_get_peb()->output_size - HL_BUFFER_HEADER_SIZE;
    std::memset(output() + HL_BUFFER_HEADER_SIZE, fill, size < capacity ? size : capacity);
}

/// Marks a result that only an instruction finished in the wrong task could return.
inline constexpr std::int64_t forged = static_cast<std::int64_t>(0xf0a6ed0300000000ull);

void register_protocol_attacks();
void register_port_attacks();
void register_string_in_attacks();
void register_trap_attacks();
void register_leftover_attacks();

}  // namespace hostile
