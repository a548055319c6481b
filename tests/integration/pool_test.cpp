// SPDX-License-Identifier: Apache-2.0
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <optional>
#include <random>
#include <thread>
#include <type_traits>
#include <vector>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/sandbox_pool.hpp"
#include "pool_support.hpp"

namespace {

// The lease is the only way to a pooled sandbox: nothing of it can be copied past its release.
static_assert(!std::is_copy_constructible_v<hl::pool_lease>);
static_assert(!std::is_copy_assignable_v<hl::pool_lease>);
static_assert(!std::is_copy_constructible_v<hl::sandbox_pool>);
static_assert(!std::is_copy_assignable_v<hl::sandbox_pool>);
static_assert(std::is_nothrow_move_constructible_v<hl::pool_lease>);
static_assert(std::is_nothrow_move_constructible_v<hl::sandbox_pool>);

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;
using hl::test::error_of;

using Pool = hl::test::pool_test;

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
                if (!(co_await lease.async_call<std::string>("GetSecret")).empty()) ++leaked;
                co_await lease.async_call<void>("StoreSecret", secret);
                EXPECT_EQ(co_await lease.async_call<std::string>("GetSecret"), secret);
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
            // Cancelled once it surely runs: a task cancelled while it still waits for a sandbox makes
            // no call and records no latency (a 5 ms timer from the start raced the acquire under TSan).
            asio::cancellation_signal cancel;
            std::optional<std::error_code> spun;
            const auto handed = pool.stats().acquired;  // in_use may still count the last task's sandbox
            asio::co_spawn(
                io,
                [&]() -> awaitable<void> {
                    auto [e] = co_await pool.async_call<void>(
                        "Spin", asio::bind_cancellation_slot(cancel.slot(), as_tuple(use_awaitable)));
                    spun = e;
                },
                asio::detached);
            co_await until([&] { return pool.stats().acquired > handed; });
            asio::steady_timer timer(io, 5ms);
            co_await timer.async_wait(use_awaitable);
            cancel.emit(asio::cancellation_type::terminal);
            co_await until([&] { return spun.has_value(); });
            EXPECT_EQ(spun.value_or(std::error_code{}), errc::cancelled);
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
            EXPECT_EQ(co_await lease.async_call<std::int32_t>("IncrementCounter"), 1);
            EXPECT_EQ(co_await lease.async_call<std::int32_t>("IncrementCounter"), 2);
            EXPECT_EQ(co_await lease.async_call<std::int32_t>("IncrementCounter"), 3);
        }
        auto lease = co_await pool.async_acquire();
        EXPECT_EQ(co_await lease.async_call<std::int32_t>("IncrementCounter"), 1);
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

// use_future from a thread that does not run the pool's executor: tasks and leases complete where
// the pool hands them over (a task given a sandbox another one released makes its call there).
TEST_F(Pool, WorksWithUseFuture) {
    auto work = asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });
    auto pool = hl::sandbox_pool::async_create(io.get_executor(), hl::test::simpleguest(), {}, nullptr,
                                               {.min_size = 1, .max_size = 1}, asio::use_future)
                    .get();
    EXPECT_EQ(pool.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 1);
    {
        auto lease = pool.async_acquire(asio::use_future).get();
        EXPECT_EQ(lease.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 1);
        EXPECT_EQ(lease.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 2);
        // These wait for the lease's sandbox, the pool's only one.
        std::vector<std::future<std::int32_t>> waiting;
        for (int i = 0; i < 4; ++i) {
            waiting.push_back(pool.async_call<std::int32_t>("IncrementCounter", asio::use_future));
        }
        lease = hl::pool_lease();  // given back: each waiting task gets it in turn, restored
        for (auto& f : waiting) EXPECT_EQ(f.get(), 1);
    }
    work.reset();
    loop.join();
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

TEST_F(Pool, AReleasedOrMovedFromLeaseNeverReachesTheSandbox) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto lease = co_await pool.async_acquire();
        co_await lease.async_call<void>("StoreSecret", std::string("the first task's secret"));
        auto moved = std::move(lease);
        EXPECT_FALSE(lease);
        auto [e1, s1] = co_await lease.async_call<std::string>("GetSecret", as_tuple(use_awaitable));
        EXPECT_EQ(e1, errc::usage_error);
        EXPECT_EQ(s1, "");
        EXPECT_EQ(co_await moved.async_call<std::string>("GetSecret"), "the first task's secret");
        moved.release();
        EXPECT_FALSE(moved);
        auto [e2, s2] = co_await moved.async_call<std::string>("GetSecret", as_tuple(use_awaitable));
        EXPECT_EQ(e2, errc::usage_error);
        EXPECT_EQ(s2, "");
        auto [e3] = co_await moved.async_call<void>("StoreSecret", std::string("planted"), as_tuple(use_awaitable));
        EXPECT_EQ(e3, errc::usage_error);
        // The next task, on the same sandbox: the planting never reached it.
        auto next = co_await pool.async_acquire();
        co_await next.async_call<void>("StoreSecret", std::string("the next task's secret"));
        auto [e4, s4] = co_await moved.async_call<std::string>("GetSecret", as_tuple(use_awaitable));
        EXPECT_EQ(e4, errc::usage_error);
        EXPECT_EQ(s4, "");
        EXPECT_EQ(co_await next.async_call<std::string>("GetSecret"), "the next task's secret");
        EXPECT_EQ(moved.last_error(), "");
    });
}

TEST_F(Pool, TheNextHolderNeverSeesThePreviousHoldersLastError) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        {
            auto a = co_await pool.async_acquire();
            auto [ec] = co_await a.async_call<void>("ReturnGuestError", 7, std::string("text the guest chose"),
                                                    as_tuple(use_awaitable));
            EXPECT_EQ(ec, errc::guest_error);
            EXPECT_NE(a.last_error().find("text the guest chose"), std::string::npos) << a.last_error();
        }
        auto b = co_await pool.async_acquire();
        EXPECT_EQ(b.last_error(), "") << "before the next holder's first call";
        EXPECT_EQ(co_await b.async_call<std::int32_t>("AddLocal", 1, 1), 2);
        EXPECT_EQ(b.last_error(), "");
        b.release();
        // A failing call made before the release does not show either: it finished before the
        // release, was killed by it, or never ran.
        auto c = co_await pool.async_acquire();
        std::optional<std::error_code> late;
        c.async_call<void>("ReturnGuestError", 7, std::string("late text"), [&](std::error_code ec) { late = ec; });
        c.release();
        auto d = co_await pool.async_acquire();
        co_await until([&] { return late.has_value(); });
        EXPECT_TRUE(late == errc::guest_error || late == errc::cancelled || late == errc::usage_error) << late->message();
        EXPECT_EQ(d.last_error(), "");
    });
}

TEST_F(Pool, AnEmptyPoolOrLeaseFailsEveryOperationWithUsageError) {
    hl::sandbox_pool none;
    hl::pool_lease no_lease;
    EXPECT_FALSE(none);
    EXPECT_FALSE(no_lease);
    EXPECT_EQ(none.stats().size, 0u);
    none.close();
    EXPECT_EQ(no_lease.last_error(), "");
    // No executor anywhere to complete on: the initiation throws.
    EXPECT_EQ(error_of([&] { none.async_acquire([](std::error_code, hl::pool_lease) { ADD_FAILURE(); }); }),
              errc::usage_error);
    EXPECT_EQ(error_of([&] { no_lease.async_call<void>("Spin", [](std::error_code) { ADD_FAILURE(); }); }),
              errc::usage_error);
    run([&]() -> awaitable<void> {
        auto [e1, l1] = co_await none.async_acquire(as_tuple(use_awaitable));
        EXPECT_EQ(e1, errc::usage_error);
        EXPECT_FALSE(l1);
        auto [e2, r2] = co_await none.async_call<std::int32_t>("AddLocal", 1, 2, as_tuple(use_awaitable));
        EXPECT_EQ(e2, errc::usage_error);
        auto [e3] = co_await none.async_drain(as_tuple(use_awaitable));
        EXPECT_EQ(e3, errc::usage_error);
        auto [e4] = co_await no_lease.async_call<void>("Spin", as_tuple(use_awaitable));
        EXPECT_EQ(e4, errc::usage_error);

        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto moved = std::move(pool);
        EXPECT_FALSE(pool);
        auto [e5, l5] = co_await pool.async_acquire(as_tuple(use_awaitable));
        EXPECT_EQ(e5, errc::usage_error);
        // A plain callback completes, posted, on the executor the moved-from pool kept.
        std::optional<std::error_code> posted;
        pool.async_call<std::int32_t>("AddLocal", 1, 2, [&](std::error_code ec, std::int32_t) { posted = ec; });
        EXPECT_FALSE(posted);
        co_await until([&] { return posted.has_value(); });
        EXPECT_EQ(posted, errc::usage_error);
        EXPECT_EQ(co_await moved.async_call<std::int32_t>("AddLocal", 1, 2), 3);
    });
}

}  // namespace
