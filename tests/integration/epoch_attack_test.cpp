// SPDX-License-Identifier: Apache-2.0
// Attacks on the holder epoch: a released lease's call is killed by the release, or never starts,
// and nothing of that (a kill armed for it, its state, its errors) reaches the next holder. Also the
// destruction of a core whose call runs, on a helper thread. Every test is bounded.
#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;

std::size_t live_threads() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
    return n;
}

class EpochAttack : public hl::test::pool_attack_test {
protected:
    // Lets the vCPU thread get somewhere: `n` trips through the io_context's queue.
    awaitable<void> yield(int n) {
        for (int i = 0; i < n; ++i) co_await asio::post(io, use_awaitable);
    }
};

bool ended_as_a_released_call_may(const std::optional<std::error_code>& ec) {
    return ec && (!*ec || *ec == errc::cancelled || *ec == errc::usage_error);
}

// ---------------------------------------------------------------------------------------------
// new_epoch() arms a kill when the previous holder's call is between begin() and its guest, or
// between its guest and end(). That kill must end in end() of that call: the next holder's first
// call, queued behind the restore, must never be cancelled by it. Holder A makes a call with a
// callback token and releases at once, or after the vCPU thread had a moment, over many rounds and
// call kinds (in the guest, in a host function, short enough to end right at the release).

TEST_F(EpochAttack, AKillArmedByTheReleaseNeverHitsTheNextHoldersFirstCall) {
    hl::test::watchdog dog(30s);
    std::function<void(hl::multi_use_sandbox&)> bind = [](hl::multi_use_sandbox& sb) {
        sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    };
    std::map<std::string, int> outcomes;  // of A's calls, for the report
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog, bind);
        std::mt19937 rng(12345);
        for (int round = 0; round < 400 && !dog.fired(); ++round) {
            auto a = co_await pool.async_acquire();
            co_await a.async_call<void>("StoreSecret", std::string("A's secret"));
            auto outcome = std::make_shared<std::optional<std::error_code>>();
            auto done = [outcome](std::error_code ec, auto...) { *outcome = ec; };
            switch (rng() % 4) {
                case 0:
                    a.async_call<std::uint64_t>("LoopFor", std::uint64_t{rng() % 20'000}, done);
                    break;
                case 1:
                    a.async_call<std::int32_t>("Add", 1, 2, done);
                    break;
                case 2:
                    a.async_call<std::int64_t>("CallHostManyTimes", 50, done);
                    break;
                default:
                    a.async_call<std::int32_t>("AddLocal", 1, 2, done);
                    break;
            }
            co_await yield(static_cast<int>(rng() % 4));
            // Gives the vCPU thread a moment (0 to ~300 us) to get somewhere in A's call.
            if (rng() % 4 != 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
            std::atomic<unsigned> spin{static_cast<unsigned>(rng() % 50'000)};
            while (spin.load(std::memory_order_relaxed) > 0) spin.fetch_sub(1, std::memory_order_relaxed);
            a.release();
            auto b = co_await pool.async_acquire();
            auto [ec, sum] = co_await b.async_call<std::int32_t>("AddLocal", 20, 22, as_tuple(use_awaitable));
            EXPECT_FALSE(ec) << "round " << round << ": the next holder's first call failed: " << ec.message();
            EXPECT_EQ(sum, 42) << "round " << round;
            auto [sec, secret] = co_await b.async_call<std::string>("GetSecret", as_tuple(use_awaitable));
            EXPECT_FALSE(sec) << "round " << round << ": " << sec.message();
            EXPECT_EQ(secret, "") << "round " << round;
            EXPECT_EQ(b.last_error(), "") << "round " << round;
            co_await until([&] { return outcome->has_value() || dog.fired(); });
            EXPECT_TRUE(ended_as_a_released_call_may(*outcome))
                << "round " << round << ": " << (*outcome ? (*outcome)->message() : "never completed");
            if (*outcome) ++outcomes[**outcome ? (*outcome)->message() : "ok"];
            if (::testing::Test::HasFailure()) break;
        }
        co_await pool.async_drain();
        const auto s = pool.stats();
        EXPECT_EQ(s.in_use, 0u);
        EXPECT_EQ(s.size, 1u);
        EXPECT_EQ(s.replacements, 0u);
    });
    for (const auto& [what, n] : outcomes) std::cout << "[ A's call ] " << n << " x " << what << "\n";
    EXPECT_FALSE(dog.fired());
}

// ---------------------------------------------------------------------------------------------
// The restore that the release queues runs after A's killed call: B never sees A's state, is never
// handed a poisoned sandbox (its calls work, the pool replaces nothing), and sees no error of A's.
// A's call is in the guest (Spin), in an async host function on the io thread (SleepOnHost), or
// failing on its own (ReturnGuestError).

TEST_F(EpochAttack, TheRestoreQueuedWhileACallIsKilledHandsTheNextHolderACleanSandbox) {
    hl::test::watchdog dog(30s);
    auto ex = io.get_executor();
    std::function<void(hl::multi_use_sandbox&)> bind = [ex](hl::multi_use_sandbox& sb) {
        hl::register_async_host_function(sb, "HostSleep", ex, hl::timer_host_function(ex));
    };
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog, bind);
        std::mt19937 rng(777);
        for (int round = 0; round < 150 && !dog.fired(); ++round) {
            auto a = co_await pool.async_acquire();
            co_await a.async_call<void>("StoreSecret", std::string("A's secret"));
            auto outcome = std::make_shared<std::optional<std::error_code>>();
            auto done = [outcome](std::error_code ec, auto...) { *outcome = ec; };
            const int kind = static_cast<int>(rng() % 3);
            if (kind == 0)
                a.async_call<void>("Spin", done);
            else if (kind == 1)
                a.async_call<std::uint32_t>("SleepOnHost", 1000u, done);
            else
                a.async_call<void>("ReturnGuestError", 9, std::string("A's failure"), done);
            a.async_call<void>("StoreSecret", std::string("planted by A"), [](std::error_code) {});
            co_await yield(static_cast<int>(rng() % 6));
            if (rng() % 4 != 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
            a.release();
            auto b = co_await pool.async_acquire();
            auto [gec, secret] = co_await b.async_call<std::string>("GetSecret", as_tuple(use_awaitable));
            EXPECT_FALSE(gec) << "round " << round << " kind " << kind << ": " << gec.message();
            EXPECT_EQ(secret, "") << "round " << round << " kind " << kind << ": the next holder saw A's state";
            auto [iec, n] = co_await b.async_call<std::int32_t>("IncrementCounter", as_tuple(use_awaitable));
            EXPECT_FALSE(iec) << "round " << round << " kind " << kind << ": " << iec.message();
            EXPECT_EQ(n, 1) << "round " << round << " kind " << kind;
            EXPECT_EQ(b.last_error(), "") << "round " << round << " kind " << kind;
            co_await until([&] { return outcome->has_value() || dog.fired(); });
            EXPECT_TRUE(ended_as_a_released_call_may(*outcome) || **outcome == errc::guest_error)
                << "round " << round << " kind " << kind << ": "
                << (*outcome ? (*outcome)->message() : "never completed");
            if (kind != 2 && *outcome) {
                EXPECT_TRUE(**outcome) << "round " << round << ": a never-ending call ended well";
            }
            if (::testing::Test::HasFailure()) break;
        }
        co_await pool.async_drain();
        const auto s = pool.stats();
        EXPECT_EQ(s.in_use, 0u);
        EXPECT_EQ(s.size, 1u);
        EXPECT_EQ(s.replacements, 0u) << "a sandbox was poisoned by the release";
    });
    EXPECT_FALSE(dog.fired());
}

// ---------------------------------------------------------------------------------------------
// pool.async_call (the pool's own lease) racing its cancellation, leases released with calls
// queued and running, and close(): every task ends once, each successful call saw a fresh sandbox,
// and afterwards nothing is in use and the pool is empty.

TEST_F(EpochAttack, PoolCallsRacingCancellationReleaseAndCloseLeaveTheStatsClean) {
    hl::test::watchdog dog(30s);
    run([&]() -> awaitable<void> {
        auto pool = co_await make({.min_size = 2, .max_size = 2}, &dog);
        std::mt19937 rng(4242);
        constexpr int tasks = 120;
        std::vector<int> completions(tasks, 0);
        int dirty = 0, bad = 0;
        std::vector<std::shared_ptr<asio::cancellation_signal>> signals;
        for (int i = 0; i < tasks; ++i) {
            auto sig = std::make_shared<asio::cancellation_signal>();
            signals.push_back(sig);
            const int kind = static_cast<int>(rng() % 4);
            auto count = [&completions, &dirty, &bad, i, kind](std::error_code ec, auto... v) {
                ++completions[i];
                if (ec && ec != errc::cancelled && ec != asio::error::operation_aborted && ec != errc::pool_closed &&
                    ec != errc::usage_error) {
                    ++bad;
                    ADD_FAILURE() << "task " << i << " kind " << kind << ": " << ec.message();
                }
                if (!ec && kind == 3) {
                    ++bad;
                    ADD_FAILURE() << "task " << i << ": a call queued on a lease ran after its release";
                }
                if constexpr (sizeof...(v) == 1) {
                    if (!ec && kind == 1 && ((v != 1) || ...)) ++dirty;
                }
            };
            if (kind == 0) {
                pool.async_call<void>("Spin", asio::bind_cancellation_slot(sig->slot(), count));
            } else if (kind == 1) {
                pool.async_call<std::int32_t>("IncrementCounter", asio::bind_cancellation_slot(sig->slot(), count));
            } else if (kind == 2) {
                pool.async_call<std::uint64_t>("LoopFor", std::uint64_t{rng() % 50'000},
                                               asio::bind_cancellation_slot(sig->slot(), count));
            } else {
                // A lease that leaves a running and a queued call behind.
                asio::co_spawn(
                    io,
                    [&pool, count, &completions, i]() mutable -> awaitable<void> {
                        auto [ec, lease] = co_await pool.async_acquire(as_tuple(use_awaitable));
                        if (ec) {
                            count(ec, std::int32_t{1});
                            co_return;
                        }
                        lease.async_call<void>("Spin", [](std::error_code) {});
                        lease.async_call<std::int32_t>("IncrementCounter", count);
                        lease.release();
                        (void)completions;
                        (void)i;
                    },
                    asio::detached);
            }
            if (rng() % 3 == 0) co_await yield(static_cast<int>(rng() % 3));
            if (rng() % 2 == 0 && kind != 3) {
                // Cancel it now, or later from the loop.
                sig->emit(asio::cancellation_type::terminal);
            }
            if (i == tasks * 3 / 4) pool.close();
            // Spins must end: cancel them in turn.
            if (i % 5 == 4) {
                for (int j = std::max(0, i - 8); j <= i; ++j) signals[j]->emit(asio::cancellation_type::terminal);
            }
        }
        for (auto& s : signals) s->emit(asio::cancellation_type::terminal);
        co_await until([&] {
            if (dog.fired()) return true;
            for (auto& s : signals) s->emit(asio::cancellation_type::terminal);
            return std::all_of(completions.begin(), completions.end(), [](int c) { return c != 0; });
        });
        for (int i = 0; i < tasks; ++i) EXPECT_EQ(completions[i], 1) << "task " << i;
        EXPECT_EQ(dirty, 0) << "a task saw a sandbox not restored";
        EXPECT_EQ(bad, 0);
        co_await pool.async_drain();
        const auto s = pool.stats();
        EXPECT_EQ(s.in_use, 0u);
        EXPECT_EQ(s.idle, 0u);
        EXPECT_EQ(s.recycling, 0u);
        EXPECT_EQ(s.size, 0u);
    });
    EXPECT_FALSE(dog.fired());
}

// ---------------------------------------------------------------------------------------------
// A core whose call runs when its last owner lets go is destroyed on a helper thread. Over many
// rounds no thread (helper or vCPU) is left behind, and nothing is destroyed twice (a crash).

TEST_F(EpochAttack, CoresDestroyedOnHelperThreadsLeaveNoThreadBehind) {
    hl::test::watchdog dog(30s);
    auto entered = std::make_shared<std::atomic<bool>>(false);
    std::function<void(hl::multi_use_sandbox&)> bind = [entered](hl::multi_use_sandbox& sb) {
        sb.register_host_function("HostAdd", [entered](std::int32_t a, std::int32_t b) {
            entered->store(true);
            return a + b;
        });
    };
    auto once = [&] {
        entered->store(false);
        run([&]() -> awaitable<void> {
            auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog, bind);
            auto lease = co_await pool.async_acquire();
            std::optional<std::error_code> outcome;
            lease.async_call<std::int64_t>("CallHostManyTimes", 1'000'000'000,
                                           [&](std::error_code ec, std::int64_t) { outcome = ec; });
            co_await until([&] { return entered->load() || dog.fired(); });  // the call runs
            pool.close();
            lease.release();  // the sandbox is dropped here while its call runs: on a helper thread
            co_await until([&] { return outcome.has_value() || dog.fired(); });
            EXPECT_EQ(outcome, errc::cancelled) << (outcome ? outcome->message() : "never completed");
            co_await pool.async_drain();
            EXPECT_EQ(pool.stats().size, 0u);
        });
        io.restart();
    };
    once();  // warm-up: threads some library starts once
    std::size_t baseline = live_threads();
    for (int i = 0; i < 200; ++i) {  // the warm-up's own helper thread may still be ending
        std::this_thread::sleep_for(1ms);
        baseline = std::min(baseline, live_threads());
    }
    for (int round = 0; round < 20 && !dog.fired(); ++round) once();
    std::size_t now = live_threads();
    for (int i = 0; i < 5000 && now > baseline; ++i) {
        std::this_thread::sleep_for(1ms);
        now = live_threads();
    }
    EXPECT_LE(now, baseline) << "threads left behind by destroyed sandboxes";
    EXPECT_FALSE(dog.fired());
}

// README: a released lease's call that has not started "completes with errc::usage_error". A call
// queued when its lease is released after close() (the sandbox is then dropped at once) is the
// same case, and must complete the same way, not with whatever the core's destruction says.
TEST_F(EpochAttack, AReleasedLeasesUnstartedCallCompletesWithUsageErrorEvenAfterClose) {
    hl::test::watchdog dog(30s);
    std::map<std::string, int> outcomes;
    for (int round = 0; round < 30 && !dog.fired(); ++round) {
        run([&]() -> awaitable<void> {
            auto pool = co_await make({.min_size = 1, .max_size = 1}, &dog);
            auto lease = co_await pool.async_acquire();
            std::optional<std::error_code> first, second;
            lease.async_call<void>("Spin", [&](std::error_code ec) { first = ec; });
            lease.async_call<std::int32_t>("AddLocal", 1, 2, [&](std::error_code ec, std::int32_t) { second = ec; });
            pool.close();
            lease.release();
            co_await until([&] { return (first.has_value() && second.has_value()) || dog.fired(); });
            EXPECT_TRUE(first == errc::cancelled || first == errc::usage_error)
                << "round " << round << ": " << (first ? first->message() : "never completed");
            EXPECT_EQ(second, errc::usage_error)
                << "round " << round << ": " << (second ? second->message() : "never completed");
            if (second) ++outcomes[second->message()];
            co_await pool.async_drain();
        });
        io.restart();
        if (::testing::Test::HasFailure()) break;
    }
    for (const auto& [what, n] : outcomes) std::cout << "[ queued call ] " << n << " x " << what << "\n";
}

[[noreturn]] void exit_while_a_helper_thread_destroys_a_core() {
    std::thread([] {
        std::this_thread::sleep_for(10s);
        ::_exit(3);  // hung in exit
    }).detach();
    asio::io_context ctx;
    std::optional<hl::sandbox_pool> pool;
    std::optional<hl::pool_lease> lease;
    asio::co_spawn(
        ctx,
        [&]() -> awaitable<void> {
            pool.emplace(co_await hl::sandbox_pool::async_create(ctx.get_executor(), hl::test::simpleguest(), {}, {},
                                                                 {.min_size = 1, .max_size = 1}, use_awaitable));
            lease.emplace(co_await pool->async_acquire());
            lease->async_call<void>("Spin", [](std::error_code) {});
            co_await asio::post(ctx, use_awaitable);
            pool->close();
            lease.reset();  // destroyed on a helper thread
            std::exit(0);
        },
        asio::detached);
    ctx.run();
    std::exit(4);
}

// The process exits (std::exit, static destructors run) while a helper thread is still destroying
// a core whose call was running: it exits cleanly, neither hanging nor crashing.
TEST_F(EpochAttack, TheProcessExitsWhileAHelperThreadDestroysACore) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(exit_while_a_helper_thread_destroys_a_core(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
