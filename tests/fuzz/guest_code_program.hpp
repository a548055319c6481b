// SPDX-License-Identifier: Apache-2.0
// The structure-aware half of the guest-code fuzzer: fuzzer bytes read as a program of x86-64
// instruction templates (stores and loads through the registers, port I/O on the library's ports
// and others, string I/O, privileged and odd instructions, stack pivots, loops, raw bytes), so that
// most inputs reach the host's exit handling instead of faulting on the first byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace hl::fuzz {

/// Instruction bytes for `program`, at most `limit` of them. Deterministic.
std::vector<std::uint8_t> assemble(std::span<const std::uint8_t> program, std::size_t limit);

}  // namespace hl::fuzz
