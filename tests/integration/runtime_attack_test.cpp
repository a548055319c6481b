// SPDX-License-Identifier: Apache-2.0
// Attacks on the runtime's promises: a pooled sandbox is reachable only through its lease and only
// until it is released, no cancellation is lost at any stage of a pool task, nothing of a previous
// holder (secrets, last_error) is visible to the next. Every test is bounded: a hang becomes a
// failure.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;

using RuntimeAttack = hl::test::pool_attack_test;

// ---------------------------------------------------------------------------------------------
// Isolation: an operation made on a lease but started only after its release.
//
// Asio initiating functions are lazy with some tokens: asio::experimental::deferred, and asio::use_awaitable (the
// default token) whose awaitable runs the initiation only when awaited. The lease's async_call()
// captures the sandbox at the moment of the call expression; started after the lease was released
// and the sandbox handed to the next holder, the operation must not run there.

TEST_F(RuntimeAttack, ADeferredCallMadeBeforeReleaseNeverReadsTheNextHoldersSecret) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto a = co_await pool.async_acquire();
        auto stale = a.async_call<std::string>("GetSecret", asio::experimental::deferred);
        a.release();
        auto b = co_await pool.async_acquire();
        co_await b.async_call<void>("StoreSecret", std::string("the next holder's secret"));
        auto [ec, secret] = co_await std::move(stale)(as_tuple(use_awaitable));
        EXPECT_NE(secret, "the next holder's secret") << "a released lease read the next holder's secret";
        EXPECT_EQ(ec, errc::usage_error) << ec.message();
    });
}

TEST_F(RuntimeAttack, AnAwaitableMadeBeforeReleaseNeverReadsTheNextHoldersSecret) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto a = co_await pool.async_acquire();
        auto stale = a.async_call<std::string>("GetSecret", as_tuple(use_awaitable));  // not started yet
        a.release();
        auto b = co_await pool.async_acquire();
        co_await b.async_call<void>("StoreSecret", std::string("the next holder's secret"));
        auto [ec, secret] = co_await std::move(stale);
        EXPECT_NE(secret, "the next holder's secret") << "a released lease read the next holder's secret";
        EXPECT_EQ(ec, errc::usage_error) << ec.message();
    });
}

TEST_F(RuntimeAttack, AnAwaitableMadeBeforeReleaseNeverPlantsIntoTheNextHolder) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto a = co_await pool.async_acquire();
        auto plant = a.async_call<void>("StoreSecret", std::string("planted by the previous holder"),
                                        as_tuple(use_awaitable));
        a.release();
        auto b = co_await pool.async_acquire();
        auto [ec] = co_await std::move(plant);
        EXPECT_EQ(ec, errc::usage_error) << ec.message();
        EXPECT_EQ(co_await b.async_call<std::string>("GetSecret"), "") << "the next holder's sandbox was written to";
    });
}

TEST_F(RuntimeAttack, AnAwaitableMadeBeforeReleaseNeverWritesTheNextHoldersLastError) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto a = co_await pool.async_acquire();
        auto failing = a.async_call<void>("ReturnGuestError", 7, std::string("the previous holder's error text"),
                                          as_tuple(use_awaitable));
        a.release();
        auto b = co_await pool.async_acquire();
        co_await b.async_call<std::int32_t>("AddLocal", 1, 2);
        auto [ec] = co_await std::move(failing);
        EXPECT_EQ(ec, errc::usage_error) << ec.message();
        EXPECT_EQ(b.last_error(), "") << "the next holder sees the previous holder's error";
    });
}

// The same through a moved lease: the stale operation outlives the move and the release.
TEST_F(RuntimeAttack, AnAwaitableMadeOnALeaseThatWasMovedAndReleasedNeverReachesTheSandbox) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto a = co_await pool.async_acquire();
        auto stale = a.async_call<std::string>("GetSecret", as_tuple(use_awaitable));
        auto moved = std::move(a);
        moved.release();
        auto b = co_await pool.async_acquire();
        co_await b.async_call<void>("StoreSecret", std::string("the next holder's secret"));
        auto [ec, secret] = co_await std::move(stale);
        EXPECT_NE(secret, "the next holder's secret");
        EXPECT_EQ(ec, errc::usage_error) << ec.message();
    });
}

// Calls queued before the release either finished before it, are killed by it, or never run: none
// runs for the next holder.
TEST_F(RuntimeAttack, ACallQueuedBeforeReleaseNeverRunsForTheNextHolder) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto a = co_await pool.async_acquire();
        co_await a.async_call<void>("StoreSecret", std::string("A"));
        std::optional<std::string> late;
        std::error_code late_ec;
        a.async_call<std::string>("GetSecret", [&](std::error_code ec, std::string s) {
            late_ec = ec;
            late = std::move(s);
        });
        a.async_call<void>("StoreSecret", std::string("planted late"), [](std::error_code) {});
        a.release();
        auto b = co_await pool.async_acquire();
        EXPECT_EQ(co_await b.async_call<std::string>("GetSecret"), "");
        co_await b.async_call<void>("StoreSecret", std::string("B"));
        co_await until([&] { return late.has_value(); });
        if (late_ec) {
            EXPECT_TRUE(late_ec == errc::usage_error || late_ec == errc::cancelled) << late_ec.message();
            EXPECT_EQ(late, "");
        } else {
            EXPECT_EQ(late, "A");
        }
        EXPECT_EQ(co_await b.async_call<std::string>("GetSecret"), "B");
    });
}

// ---------------------------------------------------------------------------------------------
// A call its holder can no longer stop: nobody can cancel a call started with asio::detached, and
// the lease is gone. The release must end it, or the pool would hand out a sandbox whose every later
// task waits behind a guest that never returns.

TEST_F(RuntimeAttack, AReleasedLeasesUnstoppableCallDoesNotHoldTheSandboxForEver) {
    hl::test::watchdog dog(20s);
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog);
        {
            auto a = co_await pool.async_acquire();
            a.async_call<void>("Spin", asio::detached);
        }
        EXPECT_EQ(pool.stats().in_use, 0u) << "the pool thinks the sandbox is free";
        asio::steady_timer bound(io, 2s);
        auto r = co_await (pool.async_call<std::int32_t>("AddLocal", 1, 2, as_tuple(use_awaitable)) ||
                           bound.async_wait(use_awaitable));
        EXPECT_EQ(r.index(), 0u) << "the next task waited 2 s behind a call of a released lease that no one can stop";
        // pool destruction kills the spin
    });
}

// ---------------------------------------------------------------------------------------------
// Cancellation races: more tasks than sandboxes, cancelled at random moments (posts, timers,
// ||), with a mix of pool.async_call and acquire + lease.async_call, on an io_context run by two
// threads (one strand per task). Every task completes exactly once; nothing stays in use.

TEST_F(RuntimeAttack, TasksCancelledAtRandomMomentsOnTwoThreadsAllEndOnceAndLeakNothing) {
    hl::test::watchdog dog(25s);
    std::atomic<int> finished{0}, completions{0}, dirty{0};
    constexpr int tasks = 400;
    hl::pool_stats stats;
    std::atomic<bool> over{false};
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
            auto pool = co_await make({.min_size = 1, .max_size = 2}, &dog);
            std::mutex rng_mutex;
            std::mt19937 rng(1234);
            auto pick = [&](int lo, int hi) {
                std::lock_guard lock(rng_mutex);
                return std::uniform_int_distribution<int>(lo, hi)(rng);
            };
            for (int i = 0; i < tasks; ++i) {
                const int kind = pick(0, 5), delay_us = pick(0, 1500), hops = pick(0, 4);
                auto strand = asio::make_strand(io);
                asio::co_spawn(
                    strand,
                    [&, kind, delay_us, hops, strand]() -> awaitable<void> {
                        asio::cancellation_signal signal;
                        std::atomic<int> calls{0};
                        if (kind <= 2) {
                            // pool.async_call cancelled by a signal after some hops or a timer
                            std::optional<std::error_code> outcome;
                            auto h = asio::bind_executor(
                                strand, asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, auto...) {
                                    ++calls;
                                    outcome = ec;
                                }));
                            if (kind == 0) pool.async_call<void>("Spin", std::move(h));
                            else if (kind == 1) pool.async_call<std::int32_t>("IncrementCounter", std::move(h));
                            else pool.async_call<std::uint64_t>("LoopFor", std::uint64_t{20'000}, std::move(h));
                            for (int k = 0; k < hops; ++k) co_await asio::post(strand, use_awaitable);
                            if (delay_us > 700) {
                                asio::steady_timer t(strand, std::chrono::microseconds(delay_us));
                                co_await t.async_wait(use_awaitable);
                            }
                            signal.emit(asio::cancellation_type::terminal);
                            for (int w = 0; w < 20000 && !outcome && !dog.fired(); ++w) {
                                asio::steady_timer t(strand, 1ms);
                                co_await t.async_wait(use_awaitable);
                            }
                            EXPECT_TRUE(outcome.has_value()) << "a cancelled pool task never completed (kind " << kind << ")";
                        } else if (kind == 3) {
                            asio::steady_timer t(strand, std::chrono::microseconds(delay_us));
                            auto r = co_await (pool.async_call<void>("Spin", as_tuple(use_awaitable)) ||
                                               t.async_wait(use_awaitable));
                            EXPECT_EQ(r.index(), 1u);
                            ++calls;
                        } else if (kind == 4) {
                            // acquire, then a call on the lease, each raced against a timer
                            asio::steady_timer t(strand, std::chrono::microseconds(delay_us));
                            auto r = co_await (pool.async_acquire(as_tuple(use_awaitable)) || t.async_wait(use_awaitable));
                            ++calls;
                            if (r.index() == 0) {
                                auto [ec, lease] = std::move(std::get<0>(r));
                                if (!ec) {
                                    if (co_await lease.async_call<std::int32_t>("IncrementCounter") != 1) ++dirty;
                                    asio::steady_timer t2(strand, std::chrono::microseconds(delay_us / 3));
                                    co_await (lease.async_call<void>("Spin", as_tuple(use_awaitable)) ||
                                              t2.async_wait(use_awaitable));
                                }
                            }
                        } else {
                            // a short task that must see a clean sandbox
                            auto [ec, n] = co_await pool.async_call<std::int32_t>("IncrementCounter", as_tuple(use_awaitable));
                            if (!ec && n != 1) ++dirty;
                            ++calls;
                        }
                        completions += calls;
                        EXPECT_EQ(calls, 1) << "kind " << kind;
                    },
                    [&](std::exception_ptr e) {
                        if (e) {
                            try {
                                std::rethrow_exception(e);
                            } catch (const std::exception& x) {
                                ADD_FAILURE() << "task threw: " << x.what();
                            }
                        }
                        ++finished;
                    });
                if (i % 8 == 7) {
                    co_await until([&] { return finished >= i - 16 || dog.fired(); }, 120s);  // the watchdog bounds it
                }
            }
            co_await until([&] { return finished >= tasks || dog.fired(); }, 120s);
            co_await pool.async_drain();
            stats = pool.stats();
            over = true;
        },
        asio::detached);
    std::thread second([&] { io.run(); });
    io.run();
    second.join();
    ASSERT_TRUE(over);
    EXPECT_FALSE(dog.fired());
    EXPECT_EQ(finished, tasks);
    EXPECT_EQ(completions, tasks);
    EXPECT_EQ(dirty, 0);
    EXPECT_EQ(stats.in_use, 0u);
    EXPECT_EQ(stats.waiters, 0u);
    EXPECT_EQ(stats.recycling, 0u);
    EXPECT_LE(stats.size, 2u);
    EXPECT_GE(stats.size, 1u);
}

// close() and the pool's destruction at random moments among cancelled and running tasks.
TEST_F(RuntimeAttack, ClosingOrDestroyingThePoolAmidRacingTasksEndsEveryTask) {
    hl::test::watchdog dog(25s);
    run([&]() -> awaitable<void> {
        std::mt19937 rng(99);
        for (int round = 0; round < 30 && !dog.fired(); ++round) {
            std::optional<hl::sandbox_pool> pool(co_await make({.min_size = 1, .max_size = 2}, &dog));
            int finished = 0;
            constexpr int n = 6;
            for (int task = 0; task < n; ++task) {
                const int delay = std::uniform_int_distribution<int>(0, 1500)(rng);
                asio::co_spawn(
                    io,
                    [&, task, delay]() -> awaitable<void> {
                        asio::steady_timer t(io, std::chrono::microseconds(delay));
                        if (task % 3 == 0) {
                            co_await (pool->async_call<void>("Spin", as_tuple(use_awaitable)) || t.async_wait(use_awaitable));
                        } else if (task % 3 == 1) {
                            co_await pool->async_call<std::uint64_t>("LoopFor", std::uint64_t{50'000}, as_tuple(use_awaitable));
                        } else {
                            auto [ec, lease] = co_await pool->async_acquire(as_tuple(use_awaitable));
                            if (!ec) {
                                co_await (lease.async_call<void>("Spin", as_tuple(use_awaitable)) || t.async_wait(use_awaitable));
                            }
                        }
                    },
                    [&](std::exception_ptr) { ++finished; });
            }
            asio::steady_timer t(io, std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng)));
            co_await t.async_wait(use_awaitable);
            if (round % 2 == 0) {
                pool->close();
                co_await until([&] { return finished == n || dog.fired(); }, 20s);
                co_await pool->async_drain();
                EXPECT_EQ(pool->stats().size, 0u);
                EXPECT_EQ(pool->stats().in_use, 0u);
                pool.reset();
            } else {
                pool.reset();  // the tasks' operations, all started by now, keep what they need
                co_await until([&] { return finished == n || dog.fired(); }, 20s);
            }
            EXPECT_EQ(finished, n) << "round " << round;
        }
        EXPECT_FALSE(dog.fired());
    });
}

// The bind function may capture what the application frees once its io_context's run() returned:
// a pool destroyed while it grows must not call it after that.
TEST_F(RuntimeAttack, APoolDestroyedWhileGrowingCallsNoBindFunctionAfterRunReturns) {
    struct counts {
        std::atomic<int> started = 0, finished = 0;
    };
    auto seen = std::make_shared<counts>();  // shared: were the promise broken, bind outlives the test
    auto bind = [seen](hl::multi_use_sandbox&) {
        ++seen->started;
        std::this_thread::sleep_for(200ms);
        ++seen->finished;
    };
    run([&]() -> awaitable<void> {
        std::optional<hl::sandbox_pool> pool(co_await make({.min_size = 2, .max_size = 2}, nullptr, bind));
        pool.reset();  // both creations are on their way
    });
    EXPECT_EQ(seen->started.load(), 2);
    EXPECT_EQ(seen->finished.load(), 2) << "the bind function ran after io_context::run() returned";
}

}  // namespace
