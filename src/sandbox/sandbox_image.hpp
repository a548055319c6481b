// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <vector>

#include "mem/layout.hpp"
#include "vmm/vm_exit.hpp"

namespace hl::detail {

/// What every sandbox made from one guest and one configuration has in common, shared (immutable) by
/// the sandbox, its snapshots and the sandboxes created from them.
struct sandbox_image {
    mem::layout layout;
    std::vector<mem::region> regions;  // every mapped region, sorted by address
    mem::gpa entry;
    vmm::cpu_setup setup;
    std::uint64_t guest_hash = 0;  // of the guest ELF file: tells snapshots of other guests apart
    int interrupt_signal = 0;

    /// True when a snapshot of `other` can be restored into a sandbox of this image.
    bool compatible_with(const sandbox_image& other) const noexcept {
        return this == &other || (guest_hash == other.guest_hash && layout == other.layout);
    }
};

}  // namespace hl::detail
