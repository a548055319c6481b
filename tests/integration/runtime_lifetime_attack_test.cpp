// SPDX-License-Identifier: Apache-2.0
// Attacks on the runtime's lifetimes: leases and pools dropped inside host functions, on the
// sandbox's own vCPU thread, and async host functions cancelled at random moments. Every test is
// bounded: a hang becomes a failure.
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

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

// Shared with host functions, which run on vCPU threads. The test starts a call and only then
// hands the slot its lease or pool; the host function waits for that (a worker can reach it first,
// and then it dropped nothing and the test hung in the drain). Only the call the test announced
// (expect()) waits: any other host call that a regression let through finds the slot empty at once.
struct host_slot {
    std::mutex mutex;
    std::condition_variable filled;
    bool expected = false;
    std::optional<hl::pool_lease> lease;
    std::optional<hl::sandbox_pool> pool;
    std::atomic<int> dropped{0};

    void expect() {
        std::lock_guard lock(mutex);
        expected = true;
    }
    template <class T>
    std::optional<T> take(std::optional<T>& what) {
        std::optional<T> gone;
        std::unique_lock lock(mutex);
        if (expected) filled.wait_for(lock, std::chrono::seconds(10), [&] { return what.has_value(); });
        expected = false;
        gone.swap(what);
        return gone;
    }
    template <class T>
    void fill(std::optional<T>& what, T value) {
        {
            std::lock_guard lock(mutex);
            what.emplace(std::move(value));
        }
        filled.notify_all();
    }
};

using RuntimeAttack = hl::test::pool_attack_test;

// ---------------------------------------------------------------------------------------------
// Lifetimes: leases and pools dropped inside host functions, on the sandbox's own vCPU thread.

TEST_F(RuntimeAttack, ALeaseDroppedInsideItsOwnSandboxsHostFunction) {
    hl::test::watchdog dog(20s);
    auto slot = std::make_shared<host_slot>();
    run([&]() -> awaitable<void> {
        // A named function, not a temporary in the co_await: GCC 12 destroys such a temporary twice.
        std::function<void(hl::multi_use_sandbox&)> bind = [slot](hl::multi_use_sandbox& sb) {
            sb.register_host_function("HostAdd", [slot](std::int32_t a, std::int32_t b) {
                std::optional<hl::pool_lease> gone = slot->take(slot->lease);
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
            slot->expect();
            lease.async_call<std::int32_t>("Add", 1, 2, [&](std::error_code ec, std::int32_t r) {
                outcome = ec;
                sum = r;
            });
            slot->fill(slot->lease, std::move(lease));
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
                std::optional<hl::sandbox_pool> gone = slot->take(slot->pool);
                if (gone) ++slot->dropped;
                gone.reset();
                return a + b;
            });
        };
        auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog, bind);
        std::vector<std::optional<std::error_code>> outcomes(4);
        slot->expect();
        for (int i = 0; i < 4; ++i) {
            pool.async_call<std::int32_t>("Add", 1, 2, [&outcomes, i](std::error_code ec, std::int32_t) { outcomes[i] = ec; });
        }
        slot->fill(slot->pool, std::move(pool));
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
