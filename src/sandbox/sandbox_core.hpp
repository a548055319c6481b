// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "hl/config.hpp"
#include "hl/error.hpp"
#include "hl/value.hpp"
#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "vmm/vm.hpp"

namespace hl::detail {

/// Everything a sandbox is, behind the public typestate classes: guest memory laid out and loaded,
/// the VM (once initialised), and the call protocol. Driven by one thread at a time.
class sandbox_core {
public:
    /// Validates and loads the guest ELF into fresh memory; no VM yet.
    static std::unique_ptr<sandbox_core> create(std::vector<std::byte> elf, const sandbox_config& config);

    /// Creates the VM and runs the guest's initialisation.
    void initialize();

    return_value call(std::string_view name, value_type return_type, std::span<const argument> args);

    bool poisoned() const noexcept { return !poison_reason_.empty(); }

private:
    sandbox_core(mem::layout layout, mem::guest_memory memory, std::vector<mem::region> regions,
                 mem::gpa entry) noexcept;

    /// Enters the guest for `op` and runs it until it reports done. Throws (and poisons) on any other
    /// way out: abort, fault, a protocol violation.
    void enter(std::uint64_t op);

    return_value read_result(std::string_view name, value_type return_type);

    [[noreturn]] void poison_and_throw(errc code, const std::string& message);
    [[noreturn]] void throw_fault();
    [[noreturn]] void throw_abort(std::uint32_t code);

    const mem::region* region_at(mem::gpa address) const noexcept;
    std::string describe(std::uint64_t address) const;

    mem::layout layout_;
    mem::guest_memory memory_;
    std::vector<mem::region> regions_;  // every mapped region, sorted by address
    mem::gpa entry_;
    vmm::cpu_setup setup_;
    std::optional<vmm::vm> vm_;
    flatbuffers::FlatBufferBuilder builder_{1024};
    std::string poison_reason_;
};

}  // namespace hl::detail
