// SPDX-License-Identifier: Apache-2.0
// What the host does for a guest that is a Linux program: its initial process stack (what the
// kernel builds at exec), and the view of guest memory its emulated kernel (linux_kernel) works on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "loader/elf_image.hpp"
#include "mem/guest_memory.hpp"
#include "sandbox/linux_kernel.hpp"
#include "sandbox/sandbox_image.hpp"

namespace hl::detail {

/// The initial stack of a Linux process, written at the top of the stack region: argc = 1, argv
/// {"guest"}, an empty environment and an auxv (AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE,
/// AT_FLAGS, AT_ENTRY, AT_UID.., AT_PLATFORM, AT_HWCAP, AT_CLKTCK, AT_SECURE, AT_RANDOM with 16 bytes
/// of host randomness, AT_HWCAP2, AT_EXECFN, AT_NULL).
struct start_stack {
    mem::gpa argc;            ///< RSP at the program's entry: 16-byte aligned
    mem::gpa call_stack_top;  ///< below it, 16-byte aligned: the stack for every later operation
};

/// Writes the initial stack into `memory`. Throws hl::error(errc::invalid_config) when the stack
/// region is too small to hold it and a useful call stack.
start_stack write_start_stack(mem::guest_memory& memory, const mem::layout& layout, const loader::elf_image& image);

/// Fills `out` from the host's getrandom(). Throws std::system_error when it fails.
void host_random(std::span<std::byte> out);

/// The emulated kernel's view of a sandbox's memory: the guest's permissions from `image`.
linux_memory_view kernel_view(mem::guest_memory& memory, const sandbox_image& image);

}  // namespace hl::detail
