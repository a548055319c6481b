// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>

#include "hl/snapshot.hpp"
#include "mem/page_bitmap.hpp"
#include "sandbox/sandbox_image.hpp"
#include "util/mapping.hpp"
#include "util/unique_fd.hpp"
#include "vmm/cpu_state.hpp"

struct hl::snapshot::state {
    std::shared_ptr<const detail::sandbox_image> image;
    util::unique_fd fd;           // sealed memfd: the guest memory
    util::mapping view;           // read-only shared mapping of fd
    mem::page_bitmap populated;   // pages held; every other page is zero
    std::uint64_t populated_count = 0;
    vmm::saved_cpu cpu;
};
