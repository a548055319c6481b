// SPDX-License-Identifier: Apache-2.0
#include "mem/guest_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "hl/error.hpp"
#include "util/strfmt.hpp"

namespace hl::mem {

guest_memory guest_memory::create(std::uint64_t size) {
    util::unique_fd fd(::memfd_create("hl-guest-memory", MFD_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::system_category(), "memfd_create for guest memory");
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        throw std::system_error(errno, std::system_category(),
                                util::strfmt("ftruncate guest memory to %llu bytes", (unsigned long long)size));
    }
    void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(), 0);
    if (addr == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap guest memory");
    return guest_memory(std::move(fd), util::mapping(addr, size));
}

std::span<std::byte> guest_memory::span(gpa addr, std::uint64_t len) {
    if (!contains(addr, len)) {
        throw error(errc::protocol_error,
                    util::strfmt("guest memory access [0x%llx, +0x%llx) is outside the sandbox's %llu bytes",
                                 (unsigned long long)addr.value, (unsigned long long)len, (unsigned long long)size()));
    }
    return {map_.data() + addr.value, static_cast<std::size_t>(len)};
}

std::span<const std::byte> guest_memory::span(gpa addr, std::uint64_t len) const {
    return const_cast<guest_memory*>(this)->span(addr, len);
}

}  // namespace hl::mem
