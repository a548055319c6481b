// SPDX-License-Identifier: Apache-2.0
// The emulated Linux kernel on any sequence of system calls: numbers and arguments come from the
// fuzzer, steered toward the regions of an address space shaped like a Linux guest's (heap, data,
// code, the supervisor state region, outside memory) and toward lengths near 2^64. After every call:
// the result is a value or -errno, nothing outside the user-writable pages and the state region
// changed, what a call hands the host is bounded, mmap and brk stay in the heap, a new FS base is a
// user-half address, and the kernel's own calls never leave its state unusable.
#include <asm/unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "sandbox/linux_kernel.hpp"

namespace {

using hl::detail::linux_kernel;
using hl::detail::syscall_request;
using hl::detail::syscall_result;

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t state = 0x2000;                           // supervisor
constexpr std::uint64_t heap = 0x10000, heap_size = 64 * page;  // [0x10000, 0x50000)
constexpr std::uint64_t data = 0x60000, data_size = 4 * page;     // user read-write
constexpr std::uint64_t code = 0x70000;                           // user read-execute
constexpr std::uint64_t memory_size = 0x80000;
constexpr std::size_t record_bytes = 8 * 7;  // the number and six arguments

bool inside(std::uint64_t a, std::uint64_t n, std::uint64_t begin, std::uint64_t size) {
    return a >= begin && n <= size && a - begin <= size - n;
}

// An argument's top four bits choose what it becomes; the rest is an offset or the value itself.
std::uint64_t steer(std::uint64_t v) {
    static constexpr std::uint64_t anchors[] = {heap, heap + heap_size - page, data, code, state, 0, memory_size,
                                                0x7fff'0000'0000ull};
    const std::uint64_t low = v & 0xffff;
    switch (v >> 60) {
    case 0: case 1: case 2: case 3: return low % 64;                                         // small: fds, flags
    case 4: case 5: return anchors[(v >> 56) % std::size(anchors)] + low - 0x100;           // near a region
    case 6: return ~std::uint64_t{0} - low;                                                 // lengths near 2^64
    case 7: return low * page;                                                              // page multiples
    case 8: return v & 0x0fff'ffff'ffff'ffffull;                                            // exactly this
    default: return v;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* input, std::size_t size) {
    if (size == 0) return 0;
    auto memory = hl::mem::guest_memory::create(memory_size);
    hl::detail::linux_memory_view view{memory,
                                       [](std::uint64_t a, std::uint64_t n, bool write) {
                                           if (n == 0) return true;
                                           return inside(a, n, heap, heap_size) || inside(a, n, data, data_size) ||
                                                  (!write && inside(a, n, code, page));
                                       },
                                       hl::mem::gpa{heap},
                                       heap_size,
                                       hl::mem::gpa{state},
                                       linux_kernel::state_bytes_for(heap_size),
                                       [](std::uint64_t p) { return p == code; }};
    linux_kernel::initialize(view);
    // Recognizable bytes everywhere else, to see any write that lands outside.
    const auto all = memory.writable(hl::mem::gpa{0}, memory_size);
    for (std::uint64_t a = 0; a < memory_size; ++a) {
        const bool state_byte = inside(a, 1, state, view.state_size);
        if (!state_byte) all[a] = static_cast<std::byte>(a * 131 + 7);
    }
    // The first byte's low bit: scribble the fuzzer's bytes over the state region first. The guest
    // cannot write it, but the kernel promises to check what it reads back anyway.
    const bool scribble = input[0] & 1;
    const std::uint8_t* data_in = input + 1;
    std::size_t left = size - 1;
    if (scribble) {
        const std::size_t n = std::min<std::size_t>(left, view.state_size);
        std::memcpy(all.data() + state, data_in, n);
        data_in += n;
        left -= n;
    }
    const std::vector<std::byte> before(all.begin(), all.end());
    // Everything but the heap, the data pages and the state region, in address order.
    const std::pair<std::uint64_t, std::uint64_t> untouchable[] = {
        {0, state}, {state + view.state_size, heap}, {heap + heap_size, data}, {data + data_size, memory_size}};

    std::uint64_t output_bytes = 0, random_bytes = 0;
    const linux_kernel::hooks hooks{
        [&](int fd, std::string_view s) {
            hl::fuzz::expect(fd == 1 || fd == 2, "output to an fd other than 1 or 2");
            output_bytes += s.size();
        },
        [](std::string_view) {},
        [&](std::span<std::byte> b) {
            random_bytes += b.size();
            std::memset(b.data(), 0x5a, b.size());
        },
        [] { return std::int64_t{1'700'000'000'000'000'000}; },
        [] { return std::int64_t{42'000'000'000}; }};

    std::uint64_t fs_base = 0;
    for (; left >= record_bytes; data_in += record_bytes, left -= record_bytes) {
        std::uint64_t words[7];
        std::memcpy(words, data_in, sizeof words);
        syscall_request r;
        r.number = words[0] >> 63 ? words[0] : words[0] % 1024;
        for (std::size_t i = 0; i < 6; ++i) r.args[i] = steer(words[i + 1]);
        output_bytes = random_bytes = 0;
        const syscall_result res = linux_kernel::serve(view, hooks, r, fs_base);

        if (res.what == syscall_result::kind::exited) {
            hl::fuzz::expect(r.number == __NR_exit || r.number == __NR_exit_group, "exited on another call");
            hl::fuzz::expect(res.value >= 0 && res.value <= 255, "exit status out of range");
            break;
        }
        hl::fuzz::expect(res.value >= -4095, "a result below -4095 is neither a value nor -errno");
        hl::fuzz::expect(output_bytes <= 64 * 1024, "one call handed the print handler more than 64 KiB");
        hl::fuzz::expect(random_bytes <= 32u << 20, "one call asked for more than 32 MiB of randomness");
        if (res.new_fs_base) {
            hl::fuzz::expect(r.number == __NR_arch_prctl, "an FS base from another call");
            hl::fuzz::expect(*res.new_fs_base < 0x0000'8000'0000'0000ull, "an FS base outside the user half");
            fs_base = *res.new_fs_base;
        }
        if (r.number == __NR_mmap && res.value >= 0) {
            const auto a = static_cast<std::uint64_t>(res.value);
            hl::fuzz::expect(a % page == 0 && inside(a, std::max<std::uint64_t>(r.args[1], 1), heap, heap_size),
                             "mmap returned pages outside the heap");
        }
        if (r.number == __NR_mremap && res.value >= 0) {
            const auto a = static_cast<std::uint64_t>(res.value);
            hl::fuzz::expect(a % page == 0 && inside(a, std::max<std::uint64_t>(r.args[2], 1), heap, heap_size),
                             "mremap returned pages outside the heap");
        }
        if (r.number == __NR_brk && res.value >= 0) {
            hl::fuzz::expect(inside(static_cast<std::uint64_t>(res.value), 0, heap, heap_size), "brk left the heap");
        }
        for (const auto& [begin, end] : untouchable) {
            if (std::memcmp(all.data() + begin, before.data() + begin, end - begin) != 0) {
                hl::fuzz::fail("a system call wrote outside user-writable memory and the state region");
            }
        }
        if (!scribble) {
            // A state only the kernel wrote always loads again: brk(0) answers with the break.
            const auto b = linux_kernel::serve(view, hooks, {__NR_brk, {}}, fs_base).value;
            hl::fuzz::expect(b >= 0 && inside(static_cast<std::uint64_t>(b), 0, heap, heap_size),
                             "the kernel's own calls left its state unusable");
        }
    }
    return 0;
}
