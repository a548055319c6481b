// SPDX-License-Identifier: Apache-2.0
// System-call failures as std::system_error, with what to do when the cause is a resource limit
// (the ones a busy host meets first: descriptors and memory).
#pragma once

#include <cerrno>
#include <string>
#include <system_error>

namespace hl::util {

/// `what` followed by advice for EMFILE, ENFILE and ENOMEM; `what` alone for any other errno.
inline std::string with_limit_advice(int e, const std::string& what) {
    switch (e) {
    case EMFILE:
        return what + " (the process is at its open-file limit, ulimit -n / RLIMIT_NOFILE; each sandbox holds "
                      "two descriptors: raise the limit or run fewer sandboxes)";
    case ENFILE: return what + " (the system is at its open-file limit, fs.file-max: close files or raise it)";
    case ENOMEM:
        return what + " (out of memory or address space: ulimit -v, a cgroup memory limit, or KVM's own; use "
                      "smaller sandbox_config sizes or fewer sandboxes)";
    default: return what;
    }
}

/// A std::system_error for errno `e` (its code is unchanged: callers still match std::errc).
inline std::system_error system_error(int e, const std::string& what) {
    return std::system_error(e, std::system_category(), with_limit_advice(e, what));
}

}  // namespace hl::util
