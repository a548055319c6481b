// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hl/config.hpp"
#include "mem/guest_memory.hpp"
#include "loader/elf_image.hpp"
#include "mem/layout.hpp"
#include "sandbox/core_dump.hpp"
#include "sandbox/fault.hpp"
#include "vmm/cpu_state.hpp"

namespace hl::detail {

/// What every sandbox made from one guest and one configuration has in common, shared (immutable) by
/// the sandbox, its snapshots and the sandboxes created from them: where everything lives, how the
/// guest may use each page, and how its vCPU starts. Its const members may be called from any thread.
struct sandbox_image {
    /// The image and the memory it was built in: the ELF loaded, and the GDT, TSS, page tables and
    /// PEB written (all recorded as host-written).
    struct built;

    /// Validates `config` and the guest ELF `elf` and builds its memory. Throws hl::error
    /// (errc::invalid_guest, errc::invalid_config, ...) naming what is wrong, std::system_error when
    /// memory cannot be had.
    static built build(std::vector<std::byte> elf, const sandbox_config& config);

    mem::layout layout;
    std::vector<mem::region> regions;  // every mapped region, sorted by address
    mem::gpa entry;
    loader::guest_kind kind = loader::guest_kind::freestanding;
    /// Where a Linux program's initialisation starts: RSP at argc of its initial stack (argv, envp,
    /// auxv above it). For a freestanding guest, the stack top.
    mem::gpa start_stack;
    /// The stack top for every other operation: below the initial stack, which stays intact (the
    /// libc keeps pointers into it: environ, the auxv).
    mem::gpa call_stack_top;
    vmm::cpu_setup setup;
    std::uint64_t guest_hash = 0;  // of the guest ELF file: tells snapshots of other guests apart
    int interrupt_signal = 0;
    /// Where the guest ELF's program headers are in guest memory (0 when no PT_LOAD holds them) and
    /// how many there are: for a core file's auxv, from which a debugger finds the loaded guest.
    mem::gpa program_headers;
    std::uint64_t program_header_count = 0;
    core_dump_settings core_dumps;
    hl::call_limits call_limits;  // sandbox_config's: the defaults of every call
    bool measure_cpu_time = false;
    std::shared_ptr<hl::metrics> metrics;  // null: none
    std::shared_ptr<hl::trace_recorder> trace;  // null: none

    /// True when a snapshot of `other` can be restored into a sandbox of this image.
    bool compatible_with(const sandbox_image& other) const noexcept {
        return this == &other || (guest_hash == other.guest_hash && layout == other.layout);
    }

    /// The mapped region holding `address`, or null.
    const mem::region* region_at(mem::gpa address) const noexcept;

    /// Names what holds `address` for messages: "null page", "heap", "supervisor-only GDT", ...
    std::string describe(std::uint64_t address) const;

    /// What the fault classifier may look at for a guest that faulted with `cpu` in `memory`: the
    /// guest's view of its pages, and reads of them. Refers to this image and `memory`.
    fault_context fault_view(const mem::guest_memory& memory, const cpu_state& cpu) const;

    /// What a core file of a guest that failed as `thread` says holds: the memory it can read, the
    /// stack from RSP up first, then the pages at RIP and at `fault_address` (if any), the image, the
    /// rest of the stack, and every other region (sandbox_config::core_dump_max_bytes). Refers to
    /// this image and `memory`.
    core_request core_view(const mem::guest_memory& memory, const core_thread& thread,
                           std::optional<std::uint64_t> fault_address) const;
};

struct sandbox_image::built {
    std::shared_ptr<const sandbox_image> image;
    mem::guest_memory memory;
};

}  // namespace hl::detail
