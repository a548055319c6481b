// SPDX-License-Identifier: Apache-2.0
// For the fuzz targets that run the fuzz guest on real KVM: building its sandbox, the outcomes a
// call into a hostile guest may document, and the check that a sandbox is whole again.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hl/sandbox.hpp"

namespace hl::fuzz {

/// The fuzz guest's ELF file, read once.
const std::vector<std::byte>& fuzzguest_elf();

/// A sandbox of `elf` (the fuzz guest, possibly patched) with host functions of several signatures
/// (so that forged host calls reach the type checks and the call itself) and handlers that keep
/// guest text off the terminal. Exits with 77 when /dev/kvm cannot be used: the targets then skip.
multi_use_sandbox make_sandbox(std::span<const std::byte> elf);

/// True for the codes a call into a guest that writes anything anywhere may end with (hl/sandbox.hpp:
/// everything but the host's own misuse and the setup codes).
bool documented(const hl::error& e);

/// After any outcome: restore() brings `sb` back to `clean` and the next call returns what it should.
/// Aborts (a crash for libFuzzer) otherwise.
void expect_recovers(multi_use_sandbox& sb, const std::shared_ptr<const snapshot>& clean);

}  // namespace hl::fuzz
