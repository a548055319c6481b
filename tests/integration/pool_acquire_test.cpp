// SPDX-License-Identifier: Apache-2.0
// Acquiring from a pool: timeouts, cancellation at every stage of a task, and the waiting room.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <optional>
#include <random>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/sandbox_pool.hpp"
#include "pool_support.hpp"

namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;

using Pool = hl::test::pool_test;

TEST_F(Pool, AnAcquireTimesOutWhenNothingFreesUp) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1, .acquire_timeout = 20ms});
        co_await pool.async_drain();  // the sandbox exists: on a loaded machine its creation may take longer than 20 ms
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

TEST_F(Pool, ACancelledAcquireGivesBackASandboxHandedToItMeanwhile) {
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1});
        auto held = co_await pool.async_acquire();
        asio::cancellation_signal signal;
        std::optional<std::error_code> outcome;
        bool got_lease = true;
        pool.async_acquire(asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, hl::pool_lease lease) {
            outcome = ec;
            got_lease = static_cast<bool>(lease);
        }));
        held.release();  // hands the sandbox to the waiter: its completion is on its way
        signal.emit(asio::cancellation_type::terminal);
        co_await until([&] { return outcome.has_value(); });
        EXPECT_EQ(outcome, asio::error::operation_aborted);
        EXPECT_FALSE(got_lease);
        auto next = co_await pool.async_acquire();  // the sandbox came back
        EXPECT_TRUE(next);
    });
}

// Each stage a pool task goes through, cancelled there: waiting for a sandbox, being handed one
// (the sandbox chosen, its completion not yet run), just after the hand-over (the call queued behind
// the restore, or taken by the vCPU thread but not yet in the guest), and in the guest.
TEST_F(Pool, ACancellationAtAnyStageOfATaskEndsIt) {
    hl::test::watchdog dog(20s);
    run([&]() -> awaitable<void> {
        auto pool = co_await make_watched({.min_size = 1, .max_size = 1}, dog);
        std::mt19937 rng(11);
        for (int round = 0; round < 50 && !dog.fired(); ++round) {
            const int stage = round % 4;
            auto held = co_await pool.async_acquire();
            asio::cancellation_signal signal;
            std::optional<std::error_code> outcome;
            pool.async_call<void>("Spin", asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec) { outcome = ec; }));
            auto cancel = [&] { signal.emit(asio::cancellation_type::terminal); };
            bool in_guest = false;
            switch (stage) {
            case 0:
                cancel();
                held.release();
                break;
            case 1:
                held.release();
                cancel();
                break;
            case 2: {
                held.release();
                const int hops = std::uniform_int_distribution<int>(1, 3)(rng);
                for (int i = 0; i < hops; ++i) co_await asio::post(io, use_awaitable);
                cancel();
                break;
            }
            default:
                held.release();
                co_await until([&] { return a_guest_runs(); });
                in_guest = a_guest_runs();
                asio::steady_timer t(io, std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng)));
                co_await t.async_wait(use_awaitable);
                cancel();
            }
            co_await until([&] { return outcome.has_value() || dog.fired(); }, 30s);
            if (!outcome) break;  // the watchdog failed the test
            if (stage < 2) {
                EXPECT_EQ(*outcome, asio::error::operation_aborted) << "stage " << stage << ": " << outcome->message();
            } else if (in_guest) {
                EXPECT_EQ(*outcome, errc::cancelled) << outcome->message();
            } else {
                EXPECT_TRUE(*outcome == errc::cancelled || *outcome == asio::error::operation_aborted)
                    << "stage " << stage << ": " << outcome->message();
            }
        }
        EXPECT_FALSE(dog.fired());
        co_await pool.async_drain();
    });
}

TEST_F(Pool, TasksRacingTimersNeverLoseTheirCancellation) {
    // More tasks than sandboxes, each racing Spin against a timer with ||: some are cancelled while
    // queued, some as they are handed a sandbox, some in the guest.
    hl::test::watchdog dog(20s);
    run([&]() -> awaitable<void> {
        auto pool = co_await make_watched({.min_size = 2, .max_size = 2}, dog);
        std::mt19937 rng(5);
        for (int round = 0; round < 50 && !dog.fired(); ++round) {
            // The later tasks' timers are staggered so that some fire just as a sandbox is being
            // handed to them by a task whose call was cancelled.
            const auto base = round % 10 == 0 ? std::chrono::microseconds(50ms)
                                              : std::chrono::microseconds(std::uniform_int_distribution<int>(0, 3000)(rng));
            const auto step = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 400)(rng));
            int finished = 0;
            for (int task = 0; task < 4; ++task) {
                asio::co_spawn(
                    io,
                    [&, limit = base + task * step]() -> awaitable<void> {
                        asio::steady_timer timer(io, limit);
                        auto winner = co_await (pool.async_call<void>("Spin", as_tuple(use_awaitable)) ||
                                                timer.async_wait(use_awaitable));
                        EXPECT_EQ(winner.index(), 1u) << "Spin never returns by itself";
                    },
                    [&](std::exception_ptr) { ++finished; });
            }
            co_await until([&] { return finished == 4 || dog.fired(); }, 30s);
        }
        EXPECT_FALSE(dog.fired());
        co_await pool.async_drain();
        EXPECT_EQ(pool.stats().in_use, 0u);
    });
}

}  // namespace
