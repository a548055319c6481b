// SPDX-License-Identifier: Apache-2.0
// Attacks on the runtime's promises: a pooled sandbox is reachable only through its lease and only
// until it is released, no cancellation is lost at any stage of a pool task, nothing of a previous
// holder (secrets, last_error) is visible to the next, and handles, leases and pools may be dropped
// anywhere. Every test is bounded: a hang becomes a failure.
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
#include <condition_variable>
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

// Shared with host functions, which run on vCPU threads.
struct host_slot {
    std::mutex mutex;
    std::optional<hl::pool_lease> lease;
    std::optional<hl::sandbox_pool> pool;
    std::atomic<int> dropped{0};
};

class RuntimeAttack : public hl::test::pool_attack_test {};

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

// ---------------------------------------------------------------------------------------------
// Lifetimes: leases and pools dropped inside host functions, on the sandbox's own vCPU thread.

TEST_F(RuntimeAttack, ALeaseDroppedInsideItsOwnSandboxsHostFunction) {
    hl::test::watchdog dog(20s);
    auto slot = std::make_shared<host_slot>();
    run([&]() -> awaitable<void> {
        // A named function, not a temporary in the co_await: GCC 12 destroys such a temporary twice.
        std::function<void(hl::multi_use_sandbox&)> bind = [slot](hl::multi_use_sandbox& sb) {
            sb.register_host_function("HostAdd", [slot](std::int32_t a, std::int32_t b) {
                std::optional<hl::pool_lease> gone;
                {
                    std::lock_guard lock(slot->mutex);
                    gone.swap(slot->lease);
                }
                if (gone) ++slot->dropped;
                gone.reset();  // here, on this sandbox's vCPU thread, in the middle of its call
                return a + b;
            });
        };
        auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog, bind);
        for (int round = 0; round < 2; ++round) {
            auto lease = co_await pool.async_acquire();
            co_await lease.async_call<void>("StoreSecret", std::string("the dropping holder's secret"));
            std::optional<std::error_code> outcome;
            std::int32_t sum = 0;
            lease.async_call<std::int32_t>("Add", 1, 2, [&](std::error_code ec, std::int32_t r) {
                outcome = ec;
                sum = r;
            });
            {
                std::lock_guard lock(slot->mutex);
                slot->lease.emplace(std::move(lease));
            }
            if (round == 1) pool.close();  // then the drop destroys the sandbox, on its own thread
            co_await until([&] { return outcome.has_value() || dog.fired(); });
            if (!outcome) {
                ADD_FAILURE() << "the call whose host function dropped its lease never completed";
                co_return;
            }
            EXPECT_EQ(slot->dropped, round + 1);
            if (round == 0) {
                // Releasing the lease ends its running call as soon as the host function returns.
                EXPECT_EQ(*outcome, errc::cancelled) << outcome->message();
                EXPECT_EQ(sum, 0);
                auto next = co_await pool.async_acquire();
                EXPECT_EQ(co_await next.async_call<std::string>("GetSecret"), "");
            }
        }
        co_await pool.async_drain();
        EXPECT_EQ(pool.stats().size, 0u);
        EXPECT_FALSE(dog.fired());
    });
}

TEST_F(RuntimeAttack, ThePoolDestroyedInsideAHostFunctionWithTasksWaiting) {
    hl::test::watchdog dog(20s);
    auto slot = std::make_shared<host_slot>();
    run([&]() -> awaitable<void> {
        // A named function, not a temporary in the co_await: GCC 12 destroys such a temporary twice.
        std::function<void(hl::multi_use_sandbox&)> bind = [slot](hl::multi_use_sandbox& sb) {
            sb.register_host_function("HostAdd", [slot](std::int32_t a, std::int32_t b) {
                std::optional<hl::sandbox_pool> gone;
                {
                    std::lock_guard lock(slot->mutex);
                    gone.swap(slot->pool);
                }
                if (gone) ++slot->dropped;
                gone.reset();
                return a + b;
            });
        };
        auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog, bind);
        std::vector<std::optional<std::error_code>> outcomes(4);
        for (int i = 0; i < 4; ++i) {
            pool.async_call<std::int32_t>("Add", 1, 2, [&outcomes, i](std::error_code ec, std::int32_t) { outcomes[i] = ec; });
        }
        {
            std::lock_guard lock(slot->mutex);
            slot->pool.emplace(std::move(pool));
        }
        co_await until([&] {
            return std::all_of(outcomes.begin(), outcomes.end(), [](const auto& o) { return o.has_value(); }) || dog.fired();
        });
        EXPECT_EQ(slot->dropped, 1);
        for (int i = 0; i < 4; ++i) {
            if (!outcomes[i]) {
                ADD_FAILURE() << "task " << i << " never completed";
                co_return;
            }
        }
        EXPECT_FALSE(*outcomes[0]) << "the call whose host function destroyed the pool: " << outcomes[0]->message();
        for (int i = 1; i < 4; ++i) {
            EXPECT_EQ(*outcomes[i], asio::error::operation_aborted) << i << ": " << outcomes[i]->message();
        }
        EXPECT_FALSE(dog.fired());
    });
}

// Async host functions cancelled at random moments: as the guest call is killed (a timer racing
// it with ||), the coroutine gets its cancellation, possibly just as it finishes by itself. Nothing
// of it reaches the next holder: every task starts clean, and every task ends.
TEST_F(RuntimeAttack, AsyncHostFunctionsCancelledAtRandomMomentsNeverReachTheNextHolder) {
    hl::test::watchdog dog(20s);
    run([&]() -> awaitable<void> {
        auto ex = io.get_executor();
        std::function<void(hl::multi_use_sandbox&)> bind = [ex](hl::multi_use_sandbox& sb) {
            hl::register_async_host_function(sb, "HostSleep", ex, hl::timer_host_function(ex));
        };
        auto pool = co_await make({.min_size = 2, .max_size = 2}, &dog, bind);
        std::mt19937 rng(77);
        int finished = 0, dirty = 0;
        constexpr int tasks = 150;
        for (int i = 0; i < tasks && !dog.fired(); ++i) {
            const auto limit = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng));
            const std::uint32_t sleep_ms = std::uniform_int_distribution<std::uint32_t>(0, 2)(rng);
            asio::co_spawn(
                io,
                [&, limit, sleep_ms]() -> awaitable<void> {
                    asio::steady_timer t(io, limit);
                    co_await (pool.async_call<std::uint32_t>("SleepOnHost", sleep_ms, as_tuple(use_awaitable)) ||
                              t.async_wait(use_awaitable));
                    auto [ec, n] = co_await pool.async_call<std::int32_t>("IncrementCounter", as_tuple(use_awaitable));
                    if (ec || n != 1) ++dirty;
                },
                [&](std::exception_ptr) { ++finished; });
            if (i % 4 == 3) co_await until([&] { return finished > i - 6 || dog.fired(); });
        }
        co_await until([&] { return finished == tasks || dog.fired(); }, 20s);
        EXPECT_EQ(finished, tasks);
        EXPECT_EQ(dirty, 0);
        co_await pool.async_drain();
        EXPECT_EQ(pool.stats().in_use, 0u);
        EXPECT_FALSE(dog.fired());
    });
}

// A lease released, with its call in an async host function, after the pool was closed: the pool
// destroys the sandbox right there, on the thread that released it, which is the io_context's only
// thread, and which the host function's coroutine needs in order to finish. Destroyed there, it
// would wait for the call, the call for the coroutine, the coroutine for the thread. A rescuer runs
// the io_context on a second thread after a few seconds, so that the test ends either way.
TEST_F(RuntimeAttack, ALeaseReleasedOnTheIoThreadAfterCloseWhileItsCallIsInAnAsyncHostFunction) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false, rescued = false;
    std::thread rescuer([&] {
        std::unique_lock lock(m);
        if (cv.wait_for(lock, 5s, [&] { return done; })) return;
        rescued = true;
        lock.unlock();
        io.run();
    });
    std::optional<std::error_code> outcome;
    run([&]() -> awaitable<void> {
        auto ex = io.get_executor();
        // A named function, not a temporary in the co_await: GCC 12 destroys such a temporary twice.
        std::function<void(hl::multi_use_sandbox&)> bind = [ex](hl::multi_use_sandbox& sb) {
            hl::register_async_host_function(sb, "HostSleep", ex, hl::timer_host_function(ex));
        };
        auto pool = co_await make({.min_size = 1, .max_size = 1}, nullptr, bind);
        auto lease = co_await pool.async_acquire();
        lease.async_call<std::uint32_t>("SleepOnHost", 300u, [&](std::error_code ec, std::uint32_t) { outcome = ec; });
        asio::steady_timer t(io, 50ms);  // the guest is in HostSleep by now
        co_await t.async_wait(use_awaitable);
        pool.close();
        lease.release();  // destroys the sandbox here: waits for the call
        co_await until([&] { return outcome.has_value(); });
        co_await pool.async_drain();
    });
    {
        std::lock_guard lock(m);
        done = true;
    }
    cv.notify_one();
    rescuer.join();
    EXPECT_FALSE(rescued) << "deadlock: the io_context's thread waited for a call that needed it";
    EXPECT_TRUE(outcome.has_value());
}

}  // namespace
