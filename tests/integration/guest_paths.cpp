// SPDX-License-Identifier: Apache-2.0
#include "guest_paths.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace hl::test {

std::string kvm_unavailable_reason() {
    const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) return std::string("cannot open /dev/kvm: ") + std::strerror(errno);
    ::close(fd);
    return {};
}

int open_fd_count() {
    int n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

int mapping_count() {
    std::ifstream maps("/proc/self/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);) ++n;
    return n;
}

}  // namespace hl::test
