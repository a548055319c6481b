// SPDX-License-Identifier: Apache-2.0
// The emulated Linux kernel of a guest that is a Linux program: it serves one system call at a time
// against the sandbox's memory, from an explicit allowlist (docs/DESIGN.md, "System calls of Linux
// guests"). It keeps no state of its own: brk and the heap pages mmap handed out live in a
// supervisor-only region of guest memory, so snapshots and restores carry them with the pages they
// describe. No KVM here: it is tested on plain memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>

#include "mem/guest_memory.hpp"

namespace hl::detail {

/// RAX and RDI, RSI, RDX, R10, R8, R9 at the `syscall`.
struct syscall_request {
    std::uint64_t number = 0;
    std::array<std::uint64_t, 6> args{};
};

struct syscall_result {
    enum class kind { returned, exited } what = kind::returned;
    std::int64_t value = 0;                    ///< returned: RAX (>= 0, or -errno); exited: the status
    std::optional<std::uint64_t> new_fs_base;  ///< arch_prctl(ARCH_SET_FS): the FS base to set
};

/// The guest memory the kernel may touch, with the guest's view of its permissions.
struct linux_memory_view {
    mem::guest_memory& memory;
    /// True when the CPL3 guest may read (or, with `write`, write) every byte of [addr, addr + len).
    std::function<bool(std::uint64_t addr, std::uint64_t len, bool write)> user_accessible;
    mem::gpa heap;  ///< page aligned: the pages brk and mmap hand out
    std::uint64_t heap_size = 0;
    mem::gpa state;  ///< supervisor-only: the kernel's bookkeeping
    std::uint64_t state_size = 0;
    /// True for a page the ELF mapped executable.
    std::function<bool(std::uint64_t page)> is_code;
};

class linux_kernel {
public:
    /// The page-rounded size of the state region for a heap of `heap_size` bytes.
    static std::uint64_t state_bytes_for(std::uint64_t heap_size);

    /// Writes the initial state: brk at the heap's start, no page mapped.
    static void initialize(linux_memory_view& view);

    /// What the kernel needs from the host.
    struct hooks {
        std::function<void(int fd, std::string_view bytes)> output;  ///< write/writev to fd 1 or 2
        std::function<void(std::string_view message)> log;           ///< notices (unserved calls)
        std::function<void(std::span<std::byte>)> random;            ///< fresh host randomness
        std::function<std::int64_t()> realtime_ns, monotonic_ns;
    };

    /// Serves one system call. Never throws for any request or guest memory content (a hostile
    /// guest chooses both): bad pointers give -EFAULT, unserved numbers -ENOSYS. Throws only what
    /// the hooks throw, or hl::error when the state region itself is out of the memory's bounds.
    static syscall_result serve(linux_memory_view& view, const hooks& h, const syscall_request& r,
                                std::uint64_t fs_base);
};

}  // namespace hl::detail
