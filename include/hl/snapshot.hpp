// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>

namespace hl {

namespace detail {
class sandbox_core;
}

/// An immutable copy of a sandbox's guest memory and vCPU state (general, special and FPU/SSE
/// registers), taken between calls by multi_use_sandbox::snapshot(). Share it freely
/// (std::shared_ptr<const snapshot>): it may be restored into its sandbox or into any sandbox of the
/// same guest and configuration, used to create new sandboxes, and it outlives the sandbox it came
/// from. Its memory is a sealed memfd that the kernel will not let anyone modify; pages the guest
/// never wrote are not stored.
///
/// Thread-safety: all members are const and safe to call concurrently.
class snapshot {
public:
    snapshot(const snapshot&) = delete;
    snapshot& operator=(const snapshot&) = delete;
    ~snapshot();

    /// The size of the guest memory it describes.
    std::uint64_t memory_size() const noexcept;
    /// The bytes it actually holds: pages that were ever written.
    std::uint64_t stored_bytes() const noexcept;

    struct state;  // defined by the library

private:
    friend class detail::sandbox_core;
    explicit snapshot(std::unique_ptr<state> s) noexcept;
    std::unique_ptr<state> state_;
};

}  // namespace hl
