// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>

namespace hl::vmm {

/// Why KVM_RUN returned, reduced to what the sandbox needs. No KVM types leak past this seam.
struct vm_exit {
    enum class kind {
        io_out,          ///< `out` to `port` with `value` (zero-extended)
        io_in,           ///< `in` from `port`: guests never do this
        mmio,            ///< access to unbacked guest physical `address`
        shutdown,        ///< triple fault: a CPU exception with no IDT, or a failed vCPU state
        interrupted,     ///< KVM_RUN returned EINTR (a signal or immediate_exit)
        internal_error,  ///< KVM could not emulate or enter; `detail` holds the suberror
        other,           ///< any other exit reason; `detail` holds it
    };

    kind what = kind::other;
    std::uint16_t port = 0;
    std::uint32_t value = 0;
    std::uint64_t address = 0;
    std::uint32_t detail = 0;
};

}  // namespace hl::vmm
