// SPDX-License-Identifier: Apache-2.0
// For the resource-limit tests: a process limit lowered for one scope, and whether this build can
// take an address-space limit (the sanitizers reserve terabytes of shadow memory up front).
#pragma once

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include <cstdint>
#include <fstream>
#include <string>

namespace hl::test {

/// Lowers the soft limit `resource` to `soft` (never above the hard limit) until destroyed.
class scoped_limit {
public:
    scoped_limit(int resource, rlim_t soft) : resource_(resource) {
        ::getrlimit(resource_, &saved_);
        rlimit lowered = saved_;
        lowered.rlim_cur = soft < saved_.rlim_max ? soft : saved_.rlim_max;
        ::setrlimit(resource_, &lowered);
    }
    ~scoped_limit() { ::setrlimit(resource_, &saved_); }
    scoped_limit(const scoped_limit&) = delete;
    scoped_limit& operator=(const scoped_limit&) = delete;

private:
    int resource_;
    rlimit saved_{};
};

/// Fills every unused descriptor number below the highest open one (with /dev/null) until
/// destroyed, so that the next descriptor the process opens is the highest plus one, and a
/// descriptor limit of that plus n leaves exactly n free.
class packed_descriptors {
public:
    packed_descriptors() {
        int highest = 0;
        for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
            highest = std::max(highest, std::stoi(e.path().filename().string()));
        }
        for (;;) {
            const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0) break;
            if (fd > highest) {
                ::close(fd);
                break;
            }
            held_.push_back(fd);
        }
        next_ = highest + 1;
    }
    ~packed_descriptors() {
        for (int fd : held_) ::close(fd);
    }
    packed_descriptors(const packed_descriptors&) = delete;
    packed_descriptors& operator=(const packed_descriptors&) = delete;

    /// The descriptor number the process opens next.
    int next() const { return next_; }

private:
    std::vector<int> held_;
    int next_ = 0;
};

/// The process's virtual memory size in bytes (VmSize).
inline std::uint64_t address_space_bytes() {
    std::ifstream in("/proc/self/status");
    std::string key;
    std::uint64_t kib = 0;
    while (in >> key) {
        if (key == "VmSize:") {
            in >> kib;
            break;
        }
    }
    return kib * 1024;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized_build = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool sanitized_build = true;
#else
inline constexpr bool sanitized_build = false;
#endif
#else
inline constexpr bool sanitized_build = false;
#endif

// clang's UBSan (vptr) opens a pipe to check each vtable it sees; a test at the descriptor limit
// cannot run under it.
#ifdef HL_TEST_VPTR_CHECK_NEEDS_DESCRIPTORS
inline constexpr bool vptr_check_needs_descriptors = true;
#else
inline constexpr bool vptr_check_needs_descriptors = false;
#endif

}  // namespace hl::test
