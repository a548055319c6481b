// SPDX-License-Identifier: Apache-2.0
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;

class Pool : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    awaitable<hl::sandbox_pool> make(hl::pool_options options) {
        co_return co_await hl::sandbox_pool::async_create(
            io.get_executor(), hl::test::simpleguest(), {},
            [](hl::multi_use_sandbox& sb) {
                sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
            },
            options);
    }

    template <class F>
    void run(F body) {
        hl::test::run_coroutine(io, std::move(body));
    }

    asio::io_context io;
};

TEST_F(Pool, TenThousandTasksNeverSeeAnotherTasksSecret) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 4, .max_size = 4});
        int done = 0, leaked = 0;
        std::mt19937_64 rng(42);
        constexpr int tasks = 10'000, concurrency = 32;
        int started = 0;
        auto worker = [&]() -> awaitable<void> {
            while (started < tasks) {
                ++started;
                const std::string secret = "secret-" + std::to_string(rng());
                auto lease = co_await pool.async_acquire();
                if (!(co_await lease->async_call<std::string>("GetSecret")).empty()) ++leaked;
                co_await lease->async_call<void>("StoreSecret", secret);
                EXPECT_EQ(co_await lease->async_call<std::string>("GetSecret"), secret);
                ++done;
            }
        };
        for (int i = 0; i < concurrency; ++i) asio::co_spawn(io, worker(), asio::detached);
        co_await pool.async_drain();
        while (done < tasks) {
            asio::steady_timer t(io, 1ms);
            co_await t.async_wait(use_awaitable);
            co_await pool.async_drain();
        }
        EXPECT_EQ(done, tasks);
        EXPECT_EQ(leaked, 0);
        const auto stats = pool.stats();
        EXPECT_EQ(stats.size, 4u);
        EXPECT_GE(stats.restores, static_cast<std::uint64_t>(tasks));
    });
}

TEST_F(Pool, RecoversFromFaultsAbortsAndCancelledSpins) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 2, .max_size = 2});
        for (int round = 0; round < 10; ++round) {
            auto [e1] = co_await pool.async_call<void>("WriteNull", as_tuple(use_awaitable));
            EXPECT_EQ(e1, errc::guest_fault);
            auto [e2] = co_await pool.async_call<void>("Abort", 1, std::string("x"), as_tuple(use_awaitable));
            EXPECT_EQ(e2, errc::guest_aborted);
            asio::steady_timer timer(io, 5ms);
            auto winner = co_await (pool.async_call<void>("Spin", as_tuple(use_awaitable)) || timer.async_wait(use_awaitable));
            EXPECT_EQ(winner.index(), 1u);
            EXPECT_EQ(co_await pool.async_call<std::int32_t>("IncrementCounter"), 1) << "every task starts clean";
            EXPECT_EQ(co_await pool.async_call<std::int32_t>("Add", round, 1), round + 1);
        }
        co_await pool.async_drain();
        const auto stats = pool.stats();
        EXPECT_EQ(stats.size, 2u);
        EXPECT_EQ(stats.failures, 0u);
        std::uint64_t calls = 0;
        for (auto n : stats.latency_us) calls += n;
        EXPECT_EQ(calls, 50u);
    });
}

TEST_F(Pool, ALeaseServesSeveralCallsInOneSession) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        {
            auto lease = co_await pool.async_acquire();
            EXPECT_EQ(co_await lease->async_call<std::int32_t>("IncrementCounter"), 1);
            EXPECT_EQ(co_await lease->async_call<std::int32_t>("IncrementCounter"), 2);
            EXPECT_EQ(co_await lease->async_call<std::int32_t>("IncrementCounter"), 3);
        }
        auto lease = co_await pool.async_acquire();
        EXPECT_EQ(co_await lease->async_call<std::int32_t>("IncrementCounter"), 1);
    });
}

TEST_F(Pool, RestoresRunOffThePathWhenThePoolIsQuiet) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        EXPECT_EQ(co_await pool.async_call<std::int32_t>("IncrementCounter"), 1);
        // The restore was queued without waking the vCPU thread; with no next task to wake it, the
        // pool does, shortly after.
        for (int i = 0; i < 1000 && pool.stats().restores == 0; ++i) {
            asio::steady_timer t(io, 1ms);
            co_await t.async_wait(use_awaitable);
        }
        auto stats = pool.stats();
        EXPECT_EQ(stats.restores, 1u);
        EXPECT_EQ(stats.recycling, 0u);
        EXPECT_EQ(stats.idle, 1u);
        // A task and a drain right behind it: drain waits for the restore too.
        EXPECT_EQ(co_await pool.async_call<std::int32_t>("IncrementCounter"), 1);
        co_await pool.async_drain();
        stats = pool.stats();
        EXPECT_EQ(stats.restores, 2u);
        EXPECT_EQ(stats.recycling, 0u);
        EXPECT_EQ(stats.size, 1u);
    });
}

TEST_F(Pool, ServesAnIoContextRunByTwoThreads) {
    // Leases end on both threads, so restores are queued from both, racing the pool's wake timer.
    std::atomic<int> done{0}, dirty{0};
    constexpr int tasks = 2000;
    std::atomic<bool> finished{false};
    hl::pool_stats stats;
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
            auto pool = co_await make({.min_size = 3, .max_size = 3});
            auto worker = [&](int n) -> awaitable<void> {
                for (int i = 0; i < n; ++i) {
                    if (co_await pool.async_call<std::int32_t>("IncrementCounter") != 1) ++dirty;
                    ++done;
                }
            };
            for (int c = 0; c < 8; ++c) asio::co_spawn(io, worker(tasks / 8), asio::detached);
            while (done < tasks) {
                asio::steady_timer t(io, 1ms);
                co_await t.async_wait(use_awaitable);
            }
            co_await pool.async_drain();
            stats = pool.stats();
            finished = true;
        },
        asio::detached);
    std::thread second([&] { io.run(); });
    io.run();
    second.join();
    ASSERT_TRUE(finished);
    EXPECT_EQ(dirty, 0);
    EXPECT_EQ(stats.restores, static_cast<std::uint64_t>(tasks));
    EXPECT_EQ(stats.recycling, 0u);
    EXPECT_EQ(stats.size, 3u);
}

TEST_F(Pool, AnAcquireTimesOutWhenNothingFreesUp) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1, .acquire_timeout = 20ms});
        auto held = co_await pool.async_acquire();
        auto [ec, lease] = co_await pool.async_acquire(as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::timed_out);
        EXPECT_FALSE(lease);
        EXPECT_EQ(pool.stats().waiters, 0u);
    });
}

TEST_F(Pool, ACancelledAcquireLeavesTheQueue) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto held = co_await pool.async_acquire();
        asio::cancellation_signal signal;
        asio::steady_timer timer(io, 10ms);
        timer.async_wait([&](std::error_code) { signal.emit(asio::cancellation_type::terminal); });
        auto [ec, lease] = co_await pool.async_acquire(asio::bind_cancellation_slot(signal.slot(), as_tuple(use_awaitable)));
        EXPECT_EQ(ec, asio::error::operation_aborted);
        EXPECT_EQ(pool.stats().waiters, 0u);
        held.release();
        auto next = co_await pool.async_acquire();  // the freed sandbox goes to the next acquire
        EXPECT_TRUE(next);
    });
}

TEST_F(Pool, RefusesAcquiresBeyondItsWaitingRoom) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1, .max_waiters = 2});
        auto held = co_await pool.async_acquire();
        int aborted = 0;
        for (int i = 0; i < 2; ++i) {
            pool.async_acquire([&](std::error_code ec, hl::pool_lease) { aborted += ec == asio::error::operation_aborted; });
        }
        auto [ec, lease] = co_await pool.async_acquire(as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::pool_busy);
        pool.close();
        asio::steady_timer t(io, 1ms);
        co_await t.async_wait(use_awaitable);
        EXPECT_EQ(aborted, 2);
    });
}

TEST_F(Pool, ClosingWithWaitersAndACallInFlightEndsEverythingCleanly) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        std::error_code in_flight, waiter1, waiter2, after;
        bool flight_done = false;
        pool.async_call<std::uint64_t>("LoopFor", std::uint64_t{2'000'000}, [&](std::error_code ec, std::uint64_t) {
            in_flight = ec;
            flight_done = true;
        });
        while (pool.stats().in_use == 0) {  // the call has its sandbox (creation may take a while)
            asio::steady_timer t(io, 100us);
            co_await t.async_wait(use_awaitable);
        }
        pool.async_acquire([&](std::error_code ec, hl::pool_lease) { waiter1 = ec; });
        pool.async_acquire([&](std::error_code ec, hl::pool_lease) { waiter2 = ec; });
        pool.close();
        auto [ec, lease] = co_await pool.async_acquire(as_tuple(use_awaitable));
        after = ec;
        co_await pool.async_drain();
        EXPECT_TRUE(flight_done);
        EXPECT_FALSE(in_flight) << "a call in flight finishes";
        EXPECT_EQ(waiter1, asio::error::operation_aborted);
        EXPECT_EQ(waiter2, asio::error::operation_aborted);
        EXPECT_EQ(after, errc::pool_closed);
        EXPECT_EQ(pool.stats().size, 0u);
    });
}

}  // namespace
