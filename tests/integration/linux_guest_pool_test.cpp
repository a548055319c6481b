// SPDX-License-Identifier: Apache-2.0
// Linux programs (glibc, musl) through the pool, as freestanding guests: every task sees the
// snapshot's program (its thread_local, its heap bookkeeping), fresh randomness, and nothing of a task
// that exited, threw, faulted or ran past its deadline.
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using namespace std::chrono_literals;

constexpr std::int64_t mib = 1 << 20;

hl::sandbox_config linux_config() {
    hl::sandbox_config c;
    c.heap_size = 16u << 20;
    return c;
}

class LinuxGuestPool : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    awaitable<hl::sandbox_pool> make_pool_of_one(const char* guest) {
        co_return co_await hl::sandbox_pool::async_create(io.get_executor(), guest, linux_config(),
                                                          [](hl::multi_use_sandbox&) {},
                                                          {.min_size = 1, .max_size = 1});
    }

    // exit_group(3) through the guest's raw system call: the task fails with the status.
    static awaitable<void> exit_the_program(hl::sandbox_pool& pool) {
        auto [ec, r] = co_await pool.async_call<std::int64_t>("RawSyscall", std::int64_t{231}, std::int64_t{3},
                                                              std::int64_t{0}, std::int64_t{0}, std::int64_t{0},
                                                              as_tuple(use_awaitable));
        EXPECT_EQ(ec, make_error_code(hl::errc::guest_aborted)) << ec.message();
    }

    asio::io_context io;
};

TEST_F(LinuxGuestPool, EveryGlibcTaskSeesTheSnapshotsProgram) {
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto pool = co_await make_pool_of_one(HL_LINUXGUEST);
        std::int64_t last_random = 0;
        for (int round = 0; round < 6; ++round) {
            // thread_local starts from the snapshot's value in every task.
            EXPECT_EQ(co_await pool.async_call<std::int32_t>("ThreadLocal"), 1) << round;
            // 4 MiB a task from a 16 MiB heap: only a restored heap bookkeeping lasts six rounds.
            EXPECT_EQ(co_await pool.async_call<std::int64_t>("Alloc", 4 * mib), 4 * mib) << round;
            const auto random = co_await pool.async_call<std::int64_t>("Random");
            EXPECT_NE(random, last_random) << round;
            last_random = random;
            auto [thrown, ignored] = co_await pool.async_call<std::int32_t>("ThrowIt", std::string("task failed"),
                                                                            as_tuple(use_awaitable));
            EXPECT_EQ(thrown, make_error_code(hl::errc::guest_error)) << thrown.message();
            co_await exit_the_program(pool);
        }
        EXPECT_EQ(pool.stats().size, 1u);
        EXPECT_EQ(pool.stats().replacements, 0u);
    });
}

TEST_F(LinuxGuestPool, AMuslTaskThatExitsOrRunsPastItsDeadlineLeavesNothingForTheNext) {
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto pool = co_await make_pool_of_one(HL_MUSLGUEST);
        for (int round = 0; round < 6; ++round) {
            EXPECT_EQ(co_await pool.async_call<std::int64_t>("Alloc", 6 * mib), 6 * mib) << round;
            co_await exit_the_program(pool);
            auto [late, ignored] = co_await pool.async_call_for<std::int64_t>(20ms, "SyscallSpin",
                                                                              as_tuple(use_awaitable));
            EXPECT_EQ(late, make_error_code(hl::errc::timed_out)) << late.message();
            EXPECT_EQ(co_await pool.async_call<std::string>("Format", 0.5), "0.500|5.00e+02|7   |ok|ff") << round;
        }
        EXPECT_EQ(pool.stats().size, 1u);
        EXPECT_EQ(pool.stats().replacements, 0u);
    });
}

}  // namespace
