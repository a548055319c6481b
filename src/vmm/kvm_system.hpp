// SPDX-License-Identifier: Apache-2.0
// What every file of the VMM needs from KVM itself: checked ioctls and /dev/kvm. Internal to src/vmm/.
#pragma once

#include <cstddef>

#include "util/unique_fd.hpp"

namespace hl::vmm::kvm {

/// Throws std::system_error for errno, naming `what`.
[[noreturn]] void throw_errno(const char* what);

/// ioctl(fd, request, arg), throwing std::system_error naming `what` when it fails.
int checked_ioctl(int fd, unsigned long request, const void* arg, const char* what);
/// ioctl(), tried again when a signal interrupted it (EINTR); never for KVM_RUN, whose EINTR is
/// how a kick ends it.
int ioctl_restarting(int fd, unsigned long request, const void* arg);

/// /dev/kvm, opened once per process, with what every VM needs from it.
struct system {
    util::unique_fd fd;
    std::size_t run_size = 0;  // of a vCPU's kvm_run mapping

    /// Opens it on first use (thread-safe). Throws hl::error(errc::kvm_unavailable) saying what to
    /// do when /dev/kvm is missing, not permitted or too old.
    static const system& get();
};

}  // namespace hl::vmm::kvm
