// SPDX-License-Identifier: Apache-2.0
// The emulated kernel of Linux guests on plain memory (no KVM): each call with good and hostile
// arguments, and its state living in guest memory.
#include "sandbox/linux_kernel.hpp"

#include <gtest/gtest.h>

#include <asm/unistd.h>
#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

namespace hl::detail {
namespace {

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t heap = 0x10000, heap_size = 64 * page;  // [0x10000, 0x50000)
constexpr std::uint64_t data = 0x60000, data_size = 4 * page;     // user read-write
constexpr std::uint64_t code = 0x70000;                           // user read-execute
constexpr std::uint64_t state = 0x2000;                           // supervisor
constexpr std::uint64_t memory_size = 0x80000;

struct fixture : ::testing::Test {
    mem::guest_memory memory = mem::guest_memory::create(memory_size);
    linux_memory_view view{memory,
                           [](std::uint64_t a, std::uint64_t n, bool write) {
                               if (n == 0) return true;
                               if (a + n < a) return false;
                               const auto in = [&](std::uint64_t b, std::uint64_t s) { return a >= b && a + n <= b + s; };
                               return in(heap, heap_size) || in(data, data_size) || (!write && in(code, page));
                           },
                           mem::gpa{heap},
                           heap_size,
                           mem::gpa{state},
                           linux_kernel::state_bytes_for(heap_size),
                           [](std::uint64_t p) { return p == code; }};
    std::string out;
    std::vector<std::string> logs;
    linux_kernel::hooks hooks{[this](int, std::string_view s) { out += s; },
                              [this](std::string_view m) { logs.emplace_back(m); },
                              [](std::span<std::byte> b) { std::memset(b.data(), 0xab, b.size()); },
                              [] { return std::int64_t{1'700'000'000'123'456'789}; },
                              [] { return std::int64_t{42'000'000'007}; }};

    fixture() { linux_kernel::initialize(view); }

    syscall_result call(std::uint64_t nr, std::uint64_t a = 0, std::uint64_t b = 0, std::uint64_t c = 0,
                        std::uint64_t d = 0, std::uint64_t e = 0, std::uint64_t f = 0) {
        return linux_kernel::serve(view, hooks, {nr, {a, b, c, d, e, f}}, 0x1234);
    }
    std::int64_t sys(std::uint64_t nr, std::uint64_t a = 0, std::uint64_t b = 0, std::uint64_t c = 0,
                     std::uint64_t d = 0) {
        return call(nr, a, b, c, d).value;
    }
    std::int64_t mmap(std::uint64_t len, std::uint64_t addr = 0, std::uint64_t flags = MAP_PRIVATE | MAP_ANONYMOUS) {
        return sys(__NR_mmap, addr, len, PROT_READ | PROT_WRITE, flags);
    }
};

using LinuxKernel = fixture;

TEST_F(LinuxKernel, BrkGrowsFromTheHeapStartAndNeverPastIt) {
    EXPECT_EQ(sys(__NR_brk, 0), static_cast<std::int64_t>(heap));
    EXPECT_EQ(sys(__NR_brk, heap + 3 * page + 5), static_cast<std::int64_t>(heap + 3 * page + 5));
    EXPECT_EQ(sys(__NR_brk, heap + heap_size + page), static_cast<std::int64_t>(heap + 3 * page + 5));
    EXPECT_EQ(sys(__NR_brk, ~0ull), static_cast<std::int64_t>(heap + 3 * page + 5));
    EXPECT_EQ(sys(__NR_brk, 0), static_cast<std::int64_t>(heap + 3 * page + 5));
}

TEST_F(LinuxKernel, MmapHandsOutZeroedHeapPagesFromTheTopUntilExhaustion) {
    const auto a = mmap(2 * page);
    EXPECT_EQ(a, static_cast<std::int64_t>(heap + heap_size - 2 * page));
    memory.write(mem::gpa{static_cast<std::uint64_t>(a)}, std::uint64_t{0xdeadbeef});
    EXPECT_EQ(sys(__NR_munmap, a, 2 * page), 0);
    const auto b = mmap(page);
    EXPECT_EQ(memory.read<std::uint64_t>(mem::gpa{static_cast<std::uint64_t>(b)}), 0u);  // zero-filled again
    int n = 0;
    while (mmap(page) > 0) ASSERT_LT(++n, 100);
    EXPECT_EQ(n, 63);
    EXPECT_EQ(mmap(page), -ENOMEM);
    EXPECT_EQ(mmap(~0ull - page), -ENOMEM);
    EXPECT_EQ(sys(__NR_brk, heap + page), static_cast<std::int64_t>(heap));  // brk cannot meet mmap'd pages
}

TEST_F(LinuxKernel, MmapRefusesFilesExecAndFixedOutsideTheHeap) {
    EXPECT_EQ(sys(__NR_mmap, 0, page, PROT_READ, MAP_PRIVATE), -ENODEV);
    EXPECT_EQ(sys(__NR_mmap, 0, page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS), -EACCES);
    EXPECT_EQ(mmap(page, data, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -ENOMEM);
    EXPECT_EQ(mmap(page, heap + 8 * page, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED),
              static_cast<std::int64_t>(heap + 8 * page));
    EXPECT_EQ(mmap(0), -EINVAL);
    EXPECT_EQ(sys(__NR_munmap, data, page), -EINVAL);
}

TEST_F(LinuxKernel, MremapShrinksGrowsInPlaceAndMoves) {
    const auto a = static_cast<std::uint64_t>(mmap(page));
    memory.write(mem::gpa{a}, std::uint64_t{77});
    const auto b = static_cast<std::uint64_t>(mmap(page));  // just below a: a cannot grow down into it
    EXPECT_EQ(b, a - page);
    EXPECT_EQ(sys(__NR_mremap, a, page, 2 * page, 0), -ENOMEM);  // no room above the top page
    const auto moved = sys(__NR_mremap, a, page, 2 * page, MREMAP_MAYMOVE);
    ASSERT_GT(moved, 0);
    EXPECT_EQ(memory.read<std::uint64_t>(mem::gpa{static_cast<std::uint64_t>(moved)}), 77u);
    EXPECT_EQ(sys(__NR_mremap, moved, 2 * page, page, 0), moved);
    EXPECT_EQ(sys(__NR_mremap, data, page, page, 0), -EINVAL);
}

TEST_F(LinuxKernel, MprotectRefusesWriteExecuteAndExecuteOutsideCode) {
    EXPECT_EQ(sys(__NR_mprotect, data, page, PROT_READ | PROT_WRITE | PROT_EXEC), -EACCES);
    EXPECT_EQ(sys(__NR_mprotect, data, page, PROT_EXEC), -EACCES);
    EXPECT_EQ(sys(__NR_mprotect, code, page, PROT_READ | PROT_WRITE), -EACCES);
    EXPECT_EQ(sys(__NR_mprotect, code, page, PROT_READ | PROT_EXEC), 0);
    EXPECT_EQ(sys(__NR_mprotect, data, page, PROT_READ), 0);
    EXPECT_EQ(sys(__NR_mprotect, data + 1, page, PROT_READ), -EINVAL);
    EXPECT_EQ(sys(__NR_mprotect, 0x100000, page, PROT_READ), -ENOMEM);
}

TEST_F(LinuxKernel, WriteAndWritevReachTheOutputHookWithEveryPointerChecked) {
    memory.write(mem::gpa{data}, std::array<char, 6>{'h', 'e', 'l', 'l', 'o', '\n'});
    EXPECT_EQ(sys(__NR_write, 1, data, 6), 6);
    EXPECT_EQ(out, "hello\n");
    EXPECT_EQ(sys(__NR_write, 1, state, 6), -EFAULT);
    EXPECT_EQ(sys(__NR_write, 1, data, ~0ull), -EFAULT);
    EXPECT_EQ(sys(__NR_write, 3, data, 6), -EBADF);
    const std::uint64_t iov[4] = {data, 2, data + 2, 4};
    memory.write(mem::gpa{data + page}, iov);
    EXPECT_EQ(sys(__NR_writev, 2, data + page, 2), 6);
    EXPECT_EQ(out, "hello\nhello\n");
    EXPECT_EQ(sys(__NR_writev, 2, data + page, 1025), -EINVAL);
    const std::uint64_t bad[2] = {state, 8};
    memory.write(mem::gpa{data + page}, bad);
    EXPECT_EQ(sys(__NR_writev, 2, data + page, 1), -EFAULT);
}

TEST_F(LinuxKernel, AHugeWriteIsShortAndNeverMoreThan64KiBReachTheHandler) {
    EXPECT_EQ(sys(__NR_write, 1, heap, heap_size), 64 * 1024);
    out.clear();
    EXPECT_EQ(sys(__NR_write, 1, heap + heap_size - 8, ~0ull >> 1), -EFAULT);  // the first 64 KiB are not all readable
    EXPECT_EQ(sys(__NR_write, 1, heap, ~0ull >> 1), 64 * 1024);  // only what is written is checked
    EXPECT_EQ(out.size(), 64u * 1024);
    const std::uint64_t iov[4] = {heap, 48 * 1024, heap + 48 * 1024, 48 * 1024};
    memory.write(mem::gpa{data}, iov);
    out.clear();
    EXPECT_EQ(sys(__NR_writev, 1, data, 2), 64 * 1024);
    EXPECT_EQ(out.size(), 64u * 1024);
}

TEST_F(LinuxKernel, ClocksRandomnessAndIdentity) {
    EXPECT_EQ(sys(__NR_clock_gettime, 1, data), 0);
    EXPECT_EQ(memory.read<std::int64_t>(mem::gpa{data}), 42);
    EXPECT_EQ(memory.read<std::int64_t>(mem::gpa{data + 8}), 7);
    EXPECT_EQ(sys(__NR_clock_gettime, 99, data), -EINVAL);
    EXPECT_EQ(sys(__NR_clock_gettime, 0, state), -EFAULT);
    EXPECT_EQ(sys(__NR_time, 0), 1'700'000'000);
    EXPECT_EQ(sys(__NR_getrandom, data, 16, 0), 16);
    EXPECT_EQ(memory.read<std::uint8_t>(mem::gpa{data + 15}), 0xab);
    EXPECT_EQ(sys(__NR_getrandom, data, 16, 0x80), -EINVAL);
    EXPECT_EQ(sys(__NR_getpid), 1);
    EXPECT_EQ(sys(__NR_uname, data), 0);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(memory.span(mem::gpa{data}, 6).data())), "Linux");
}

TEST_F(LinuxKernel, ArchPrctlSetsAndGetsTheFsBase) {
    const auto r = call(__NR_arch_prctl, 0x1002, 0x60000);
    EXPECT_EQ(r.value, 0);
    EXPECT_EQ(r.new_fs_base, 0x60000u);
    EXPECT_EQ(sys(__NR_arch_prctl, 0x1002, 0x8000'0000'0000'0000ull), -EPERM);
    EXPECT_EQ(sys(__NR_arch_prctl, 0x1003, data), 0);
    EXPECT_EQ(memory.read<std::uint64_t>(mem::gpa{data}), 0x1234u);
    EXPECT_EQ(sys(__NR_arch_prctl, 0x1003, state), -EFAULT);
    EXPECT_EQ(sys(__NR_arch_prctl, 0x9999, data), -EINVAL);
}

TEST_F(LinuxKernel, ExitEndsTheProgramAndThreadsCannotStart) {
    const auto r = call(__NR_exit_group, 3);
    EXPECT_EQ(r.what, syscall_result::kind::exited);
    EXPECT_EQ(r.value, 3);
    EXPECT_EQ(sys(__NR_clone), -EAGAIN);
    EXPECT_EQ(sys(__NR_openat, 0, data), -ENOENT);
    memory.write(mem::gpa{data}, std::uint32_t{5});
    EXPECT_EQ(sys(__NR_futex, data, 0, 5), -EDEADLK);  // a wait nobody could end
    EXPECT_EQ(sys(__NR_futex, data, 0, 6), -EAGAIN);
    EXPECT_EQ(sys(__NR_futex, data + 1, 1, 1), -EFAULT);
}

TEST_F(LinuxKernel, UnservedNumbersAreEnosysAndReportedAFewTimesOnly) {
    for (std::uint64_t nr = 500; nr < 540; ++nr) EXPECT_EQ(sys(nr), -ENOSYS) << nr;
    EXPECT_EQ(sys(500), -ENOSYS);
    EXPECT_EQ(logs.size(), 16u);
    EXPECT_NE(logs[0].find("system call 500"), std::string::npos);
}

TEST_F(LinuxKernel, EveryNumberWithHostileArgumentsAnswersAndNeverThrows) {
    const std::uint64_t hostile[] = {0, state, heap, data, code, memory_size, ~0ull, ~0ull - 7, 1ull << 63};
    std::uint64_t seed = 7;
    for (std::uint64_t nr = 0; nr < 1024; ++nr) {
        for (int round = 0; round < 4; ++round) {
            std::array<std::uint64_t, 6> args{};
            for (auto& a : args) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                a = (seed >> 60) < 10 ? hostile[(seed >> 32) % std::size(hostile)] : seed;
            }
            syscall_result r;
            ASSERT_NO_THROW(r = linux_kernel::serve(view, hooks, {nr, args}, 0)) << nr;
            if (r.what == syscall_result::kind::returned && r.value < 0) {
                EXPECT_GE(r.value, -4095) << nr;
            }
        }
    }
}

TEST_F(LinuxKernel, ACorruptedStateRegionIsRefusedNotTrusted) {
    memory.write(mem::gpa{state}, std::uint64_t{0});  // the magic
    EXPECT_EQ(mmap(page), -ENOMEM);
    linux_kernel::initialize(view);
    memory.write(mem::gpa{state + 16}, ~0ull);  // brk far past the heap
    EXPECT_EQ(sys(__NR_brk, 0), -ENOMEM);
}

}  // namespace
}  // namespace hl::detail
