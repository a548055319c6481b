// SPDX-License-Identifier: Apache-2.0
// A pool at the process's file-descriptor limit: a pool that cannot be created says why; one that
// cannot grow keeps serving its waiters with the sandboxes it has, counts the failures, and grows
// again once the limit is lifted.
#include <asio/co_spawn.hpp>
#include <asio/bind_executor.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/runtime.hpp"
#include "hl/runtime/sandbox_pool.hpp"
#include "resource_limits.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;

class PoolLimits : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    asio::io_context io;
};

// A worker's first slice end (or host call, or timed acquire) needs Asio's timer machinery, which
// takes descriptors when first used: a worker makes it at its start, so that a call it runs at the
// limit does not vanish with the exception Asio would throw there.
TEST_F(PoolLimits, ACallSlicedAtTheFileDescriptorLimitGoesOn) {
    if (hl::test::vptr_check_needs_descriptors) {
        GTEST_SKIP() << "clang's UBSan checks each vptr through a pipe, which the descriptor limit refuses";
    }
    hl::runtime rt({.workers = 1});
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto sb = co_await hl::async_sandbox::async_create(rt.get_executor(0), hl::test::simpleguest(), {}, {},
                                                           asio::bind_executor(io, use_awaitable));
        const hl::test::packed_descriptors packed;
        const hl::test::scoped_limit limit(RLIMIT_NOFILE, static_cast<rlim_t>(packed.next()));
        // Tens of milliseconds of guest work: tens of slices of the default 1 ms.
        auto [ec, result] = co_await sb.async_call<std::uint64_t>("LoopFor", std::uint64_t{2'000'000},
                                                                  asio::bind_executor(io, as_tuple(use_awaitable)));
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(result, 2'000'000u);
    });
}

TEST_F(PoolLimits, AtTheFileDescriptorLimitThePoolServesWithWhatItHasAndGrowsLater) {
    if (hl::test::vptr_check_needs_descriptors) {
        GTEST_SKIP() << "clang's UBSan checks each vptr through a pipe, which the descriptor limit refuses";
    }
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto pool = co_await hl::sandbox_pool::async_create(io.get_executor(), hl::test::simpleguest(), {}, {},
                                                             {.min_size = 1, .max_size = 2, .acquire_timeout = std::chrono::seconds(10)});
        co_await hl::test::until(io, [&] { return pool.stats().idle == 1; });
        EXPECT_EQ(pool.stats().size, 1u);
        {
            const hl::test::packed_descriptors packed;
            const hl::test::scoped_limit limit(RLIMIT_NOFILE, static_cast<rlim_t>(packed.next()));
            // A new pool cannot even make its template: the caller learns which limit.
            auto [create_error, none] = co_await hl::sandbox_pool::async_create(
                io.get_executor(), hl::test::simpleguest(), {}, {}, {}, as_tuple(use_awaitable));
            EXPECT_EQ(create_error, std::errc::too_many_files_open) << create_error.message();
            EXPECT_FALSE(none);

            // Takes the idle sandbox; the one the pool starts creating beside it cannot be made.
            std::optional<hl::pool_lease> first = co_await pool.async_acquire();
            EXPECT_EQ(co_await first->async_call<std::int32_t>("EchoInt32", 1), 1);
            // The next acquire waits for the sandbox in use rather than failing: it can be served.
            std::optional<std::int32_t> second_result;
            asio::co_spawn(io, [&]() -> awaitable<void> {
                auto second = co_await pool.async_acquire();
                second_result = co_await second.async_call<std::int32_t>("EchoInt32", 2);
            }, asio::detached);
            co_await hl::test::until(io, [&] { return pool.stats().waiters == 1 && pool.stats().failures >= 1; });
            EXPECT_EQ(pool.stats().waiters, 1u);
            EXPECT_GE(pool.stats().failures, 1u);
            first.reset();
            co_await hl::test::until(io, [&] { return second_result.has_value(); });
            EXPECT_EQ(second_result, 2);
            EXPECT_EQ(pool.stats().size, 1u);
        }
        // Lifted: two tasks at once make the pool grow to its maximum again.
        auto a = co_await pool.async_acquire();
        auto b = co_await pool.async_acquire();
        EXPECT_EQ(co_await a.async_call<std::int32_t>("EchoInt32", 3), 3);
        EXPECT_EQ(co_await b.async_call<std::int32_t>("EchoInt32", 4), 4);
        EXPECT_EQ(pool.stats().size, 2u);
        a.release();
        b.release();
        co_await pool.async_drain();
        pool.close();
    });
}

}  // namespace
