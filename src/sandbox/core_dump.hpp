// SPDX-License-Identifier: Apache-2.0
// Crash dumps: when a guest fails by its own doing, an ELF core file of it in the configured
// directory, bounded in number and size (sandbox_config::core_dump_*).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hl/config.hpp"
#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "sandbox/core_file.hpp"

namespace hl::detail {

/// The crash-dump part of a sandbox_config, checked.
struct core_dump_settings {
    std::filesystem::path directory;  // absolute; empty: no dumps
    std::uint32_t max_files = 16;
    std::uint64_t max_bytes = 64ull << 20;

    /// Throws hl::error(errc::invalid_config) naming the field that is out of range; makes a relative
    /// directory absolute (from the working directory now).
    static core_dump_settings from(const sandbox_config& config);
};

/// Everything a core file of a failed guest holds.
struct core_request {
    core_thread thread;
    const mem::guest_memory& memory;
    std::span<const mem::region> regions;  // all of the guest's, sorted; only what it can read is dumped
    std::vector<memory_range> wanted;      // memory in the order it is kept when the size limit bites
    std::vector<std::pair<std::uint64_t, std::uint64_t>> auxv;  // for NT_AUXV (AT_ENTRY: where the guest is)
};

/// Writes the core file that `request()` describes into settings.directory, unless that holds
/// max_files core files (hl-core-*.core) already: then `request` is not called, and a full directory
/// costs a look at it and no more. Others of the library wait meanwhile (an flock on the
/// directory), in this process and in others. The file is written under a hidden temporary name
/// and renamed, so a partial core never has a core's name. Never throws: returns how the failure's
/// message ends, "core written to <path>" or "no core written: <why>", or "" when dumps are off.
std::string dump_core(const core_dump_settings& settings, const std::function<core_request()>& request) noexcept;

}  // namespace hl::detail
