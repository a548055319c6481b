// SPDX-License-Identifier: Apache-2.0
#include "mem/guest_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "hl/error.hpp"
#include "util/strfmt.hpp"
#include "util/system_error.hpp"
#include "util/unique_fd.hpp"

namespace hl::mem {

guest_memory guest_memory::create(std::uint64_t size) {
    util::unique_fd fd(::memfd_create("hl-guest-memory", MFD_CLOEXEC));
    if (!fd) throw util::system_error(errno, "memfd_create for guest memory");
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        const int e = errno;  // before formatting the message, which may allocate
        throw util::system_error(e, util::strfmt("ftruncate guest memory to %llu bytes", (unsigned long long)size));
    }
    // The mapping keeps the file alive; the descriptor is not needed after this.
    void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd.get(), 0);
    if (addr == MAP_FAILED) throw util::system_error(errno, "mmap guest memory");
    return guest_memory(util::mapping(addr, size));
}

guest_memory guest_memory::map_private(int fd, std::uint64_t size) {
    void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (addr == MAP_FAILED) throw util::system_error(errno, "mmap snapshot copy-on-write");
    return guest_memory(util::mapping(addr, size));
}

void guest_memory::check(gpa addr, std::uint64_t len) const {
    if (!contains(addr, len)) {
        throw error(errc::protocol_error,
                    util::strfmt("guest memory access [0x%llx, +0x%llx) is outside the sandbox's %llu bytes",
                                 (unsigned long long)addr.value, (unsigned long long)len, (unsigned long long)size()));
    }
}

std::span<std::byte> guest_memory::writable(gpa addr, std::uint64_t len) {
    check(addr, len);
    if (len > 0) {
        for (std::uint64_t p = addr.value / page_size; p <= (addr.value + len - 1) / page_size; ++p) {
            if (host_written_.word(p / 64) == 0) host_written_words_.push_back(static_cast<std::uint32_t>(p / 64));
            host_written_.set(p);
        }
    }
    return {map_.data() + addr.value, static_cast<std::size_t>(len)};
}

std::span<const std::byte> guest_memory::span(gpa addr, std::uint64_t len) const {
    check(addr, len);
    return {map_.data() + addr.value, static_cast<std::size_t>(len)};
}

void guest_memory::copy_pages_from(std::uint64_t first_page, std::uint64_t count, const std::byte* source) {
    check(gpa{first_page * page_size}, count * page_size);
    std::memcpy(map_.data() + first_page * page_size, source + first_page * page_size, count * page_size);
}

void guest_memory::zero_pages(std::uint64_t first_page, std::uint64_t count) {
    check(gpa{first_page * page_size}, count * page_size);
    std::memset(map_.data() + first_page * page_size, 0, count * page_size);
}

}  // namespace hl::mem
