// SPDX-License-Identifier: Apache-2.0
// The runtime under load and at its edges: random cancellations and kills, pools across workers,
// shutdown with calls in flight, diagnostics, empty handles.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <asio/detached.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "hl/runtime/async_host_function.hpp"
#include "worker_support.hpp"

namespace {

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;
using hl::test::make_sandbox;
using hl::test::run_on;
using hl::test::until_on;

class WorkerLoad : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    awaitable<hl::sandbox_pool> make_pool(hl::runtime& rt, asio::any_io_executor ex, hl::pool_options options,
                                          std::function<void(hl::multi_use_sandbox&)> bind = {}) {
        options.runtime = &rt;
        co_return co_await hl::sandbox_pool::async_create(ex, hl::test::simpleguest(), {}, std::move(bind), options,
                                                          use_awaitable);
    }
};

TEST_F(WorkerLoad, CancellationsAndKillsAtRandomMomentsOverThousandsOfCallsLoseNothing) {
    hl::runtime rt({.workers = 2, .slice = 500us});
    hl::test::watchdog dog(40s);
    asio::io_context io;
    std::atomic<bool> stop_killer{false};
    std::vector<hl::interrupt_handle> handles;
    std::mutex handles_mutex;
    // Kills a random sandbox's call at random moments, from its own thread.
    std::thread killer([&] {
        std::mt19937 rng(11);
        while (!stop_killer.load()) {
            std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(50, 800)(rng)));
            std::lock_guard lock(handles_mutex);
            if (!handles.empty()) handles[rng() % handles.size()].kill();
        }
    });
    int issued = 0, completed = 0, wrong = 0;
    auto one_sandbox = [&](int seed) -> awaitable<void> {
        auto sb = co_await make_sandbox(rt.get_executor(static_cast<std::size_t>(seed) % 2));
        dog.watch(sb.interrupt_handle());
        {
            std::lock_guard lock(handles_mutex);
            handles.push_back(sb.interrupt_handle());
        }
        auto clean = co_await sb.async_snapshot();
        std::mt19937 rng(static_cast<unsigned>(seed));
        for (int i = 0; i < 700 && !dog.fired(); ++i) {
            const int kind = static_cast<int>(rng() % 8);
            const bool spin = kind == 0;
            asio::cancellation_signal signal;
            std::optional<std::error_code> outcome;
            int result = -1, times = 0;
            ++issued;
            auto done = [&](std::error_code ec, auto... r) {
                ++times;
                ++completed;
                outcome = ec;
                if constexpr (sizeof...(r) > 0) result = (r, ...);
            };
            if (spin) {
                sb.async_call<void>("Spin", asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, done)));
            } else {
                sb.async_call<std::int32_t>("AddLocal", i, 1,
                                            asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, done)));
            }
            // Cancelled at once (still queued), after a moment (running), or not at all.
            if (spin || kind == 1) {
                const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 400)(rng));
                for (const auto end = std::chrono::steady_clock::now() + delay; std::chrono::steady_clock::now() < end;) {
                }
                signal.emit(asio::cancellation_type::terminal);
            } else if (kind == 2) {
                signal.emit(asio::cancellation_type::terminal);
            }
            co_await hl::test::until(io, [&] { return outcome.has_value() || dog.fired(); }, 30s);
            if (!outcome) break;
            if (times != 1) ++wrong;
            if (!*outcome) {
                if (spin || result != i + 1) ++wrong;
            } else if (*outcome != errc::cancelled && *outcome != errc::poisoned &&
                       *outcome != asio::error::operation_aborted) {
                ++wrong;
                ADD_FAILURE() << outcome->message();
            }
            if (*outcome) co_await sb.async_restore(clean);
        }
    };
    for (int s = 1; s <= 4; ++s) asio::co_spawn(io, one_sandbox(s), asio::detached);
    io.run();
    stop_killer = true;
    killer.join();
    EXPECT_FALSE(dog.fired());
    EXPECT_EQ(issued, 2800);
    EXPECT_EQ(completed, issued);
    EXPECT_EQ(wrong, 0);
}

TEST_F(WorkerLoad, PoolTasksFromCoroutinesOnEveryWorkerAreAllServed) {
    hl::runtime rt({.workers = 2});
    asio::io_context io;
    std::optional<hl::sandbox_pool> pool;
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        pool.emplace(co_await make_pool(rt, io.get_executor(), {.min_size = 2, .max_size = 2}));
    });
    std::atomic<int> served{0};
    std::vector<std::future<void>> clients;
    for (std::size_t w = 0; w < 2; ++w) {
        for (int c = 0; c < 3; ++c) {
            auto done = std::make_shared<std::promise<void>>();
            clients.push_back(done->get_future());
            asio::co_spawn(rt.get_executor(w), [&]() -> awaitable<void> {
                for (int i = 0; i < 30; ++i) {
                    if (co_await pool->async_call<std::int32_t>("AddLocal", i, 5) == i + 5) ++served;
                }
            }, [done](std::exception_ptr e) {
                EXPECT_FALSE(e);
                done->set_value();
            });
        }
    }
    for (auto& f : clients) ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
    EXPECT_EQ(served.load(), 180);
    pool.reset();
}

TEST_F(WorkerLoad, WaitingAcquiresFromDifferentWorkersAreServedInOrder) {
    hl::runtime rt({.workers = 2});
    asio::io_context io;
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto pool = co_await make_pool(rt, io.get_executor(), {.min_size = 1, .max_size = 1});
        auto held = co_await pool.async_acquire();
        std::mutex m;
        std::vector<int> order;
        for (int i = 0; i < 8; ++i) {
            pool.async_acquire(asio::bind_executor(rt.get_executor(static_cast<std::size_t>(i) % 2),
                                                   [&, i](std::error_code ec, hl::pool_lease lease) {
                                                       EXPECT_FALSE(ec);
                                                       std::lock_guard lock(m);
                                                       order.push_back(i);
                                                       lease.release();  // the next waiter's turn
                                                   }));
        }
        held.release();
        co_await hl::test::until(io, [&] {
            std::lock_guard lock(m);
            return order.size() == 8;
        });
        std::lock_guard lock(m);
        EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
    });
}

TEST_F(WorkerLoad, DestroyingSandboxesWithCallsInFlightThenTheRuntimeEndsEveryCall) {
    asio::io_context io;
    int cancelled = 0, aborted = 0, ok = 0, other = 0;
    {
        hl::runtime rt({.workers = 1});
        std::vector<hl::async_sandbox> sandboxes;
        hl::test::run_coroutine(io, [&]() -> awaitable<void> {
            const auto wex = rt.get_executor(0);
            for (int i = 0; i < 3; ++i) {
                std::function<void(hl::uninitialized_sandbox&)> setup = [wex](hl::uninitialized_sandbox& u) {
                    hl::register_async_host_function(u, "HostSleep", wex, hl::timer_host_function(wex));
                };
                sandboxes.push_back(co_await make_sandbox(wex, setup));
            }
        });
        io.restart();
        auto count = [&](std::error_code ec, auto...) {
            (!ec ? ok : ec == errc::cancelled ? cancelled : ec == asio::error::operation_aborted ? aborted : other)++;
        };
        sandboxes[0].async_call<void>("Spin", count);                          // running, in slices
        sandboxes[1].async_call<std::uint32_t>("SleepOnHost", 60'000u, count);  // waiting for its host function
        for (auto& sb : sandboxes) {
            for (int i = 0; i < 3; ++i) sb.async_call<std::int32_t>("AddLocal", 1, 1, count);
        }
        while (!sandboxes[0].interrupt_handle().running()) std::this_thread::yield();
        sandboxes.clear();
        io.run();
    }  // the runtime after its sandboxes
    // Spin was running (killed); SleepOnHost was running or queued; the rest queued or run.
    EXPECT_EQ(cancelled + aborted + ok, 11);
    EXPECT_GE(cancelled, 1);
    EXPECT_LE(ok, 3);
    EXPECT_EQ(other, 0);
}

TEST_F(WorkerLoad, AHandleThatOutlivesItsRuntimeFailsItsCallsAndDiesQuietly) {
    asio::io_context io;
    std::optional<hl::async_sandbox> sb;
    {
        hl::runtime rt({.workers = 1});
        hl::test::run_coroutine(io, [&]() -> awaitable<void> { sb.emplace(co_await make_sandbox(rt.get_executor(0))); });
    }
    io.restart();
    std::optional<std::error_code> outcome;
    sb->async_call<std::int32_t>("AddLocal", 1, 1, asio::bind_executor(io, [&](std::error_code ec, std::int32_t) { outcome = ec; }));
    io.run();
    EXPECT_EQ(outcome, asio::error::operation_aborted);
    sb.reset();
}

TEST_F(WorkerLoad, DestroyingAPoolWithTasksInFlightEndsEveryTask) {
    asio::io_context io;
    hl::runtime rt({.workers = 2});
    int ok = 0, ended = 0, other = 0;
    {
        std::optional<hl::sandbox_pool> pool;
        hl::test::run_coroutine(io, [&]() -> awaitable<void> {
            auto bind = [ex = io.get_executor()](hl::multi_use_sandbox& sb) {
                hl::register_async_host_function(sb, "HostSleep", ex, hl::timer_host_function(ex));
            };
            pool.emplace(co_await make_pool(rt, io.get_executor(), {.min_size = 2, .max_size = 2}, bind));
        });
        io.restart();
        for (int i = 0; i < 10; ++i) {
            auto count = [&](std::error_code ec, auto...) {
                (!ec ? ok : (ec == asio::error::operation_aborted || ec == errc::pool_closed) ? ended : other)++;
            };
            if (i % 3 == 0) {
                pool->async_call<std::uint32_t>("SleepOnHost", 5u, count);
            } else {
                pool->async_call<std::int32_t>("AddLocal", i, i, count);
            }
        }
        pool.reset();
    }
    io.run();
    EXPECT_EQ(ok + ended + other, 10);
    EXPECT_EQ(other, 0);
}

TEST_F(WorkerLoad, DiagnosticsCarryTheMessageOfEveryKindOfFailure) {
    hl::runtime rt({.workers = 2});
    asio::io_context io;
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        hl::diagnostics d{"stale"};
        auto sb = co_await make_sandbox(rt.get_executor(0));
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("AddLocal", 1, 1, hl::with_diagnostics(d)), 2);
        EXPECT_TRUE(d.message.empty()) << "a success empties it";
        auto [ec1] = co_await sb.async_call<void>("WriteNull", hl::with_diagnostics(d, as_tuple(use_awaitable)));
        EXPECT_EQ(ec1, errc::guest_fault);
        EXPECT_FALSE(d.message.empty());

        auto pool = co_await make_pool(rt, io.get_executor(), {.min_size = 1, .max_size = 1, .max_waiters = 1});
        hl::diagnostics p;
        auto [ec2] = co_await pool.async_call<void>("WriteNull", hl::with_diagnostics(p, as_tuple(use_awaitable)));
        EXPECT_EQ(ec2, errc::guest_fault);
        EXPECT_FALSE(p.message.empty());
        auto held = co_await pool.async_acquire();
        pool.async_acquire([](std::error_code, hl::pool_lease) {});  // fills the waiting room
        hl::diagnostics busy;
        auto [ec3, none] = co_await pool.async_acquire(hl::with_diagnostics(busy, as_tuple(use_awaitable)));
        EXPECT_EQ(ec3, errc::pool_busy);
        EXPECT_NE(busy.message.find("max_waiters"), std::string::npos) << busy.message;

        auto timed = co_await make_pool(rt, io.get_executor(), {.min_size = 1, .max_size = 1, .acquire_timeout = 5ms});
        co_await hl::test::until(io, [&] { return timed.stats().idle == 1; });
        auto held2 = co_await timed.async_acquire();
        hl::diagnostics late;
        auto [ec4, none2] = co_await timed.async_acquire(hl::with_diagnostics(late, as_tuple(use_awaitable)));
        EXPECT_EQ(ec4, errc::timed_out);
        EXPECT_NE(late.message.find("acquire_timeout"), std::string::npos) << late.message;

        hl::diagnostics c;
        auto [ec5, nothing] = co_await hl::async_sandbox::async_create(
            rt.get_executor(1), "/nonexistent/guest", {}, {}, hl::with_diagnostics(c, as_tuple(use_awaitable)));
        EXPECT_TRUE(ec5);
        EXPECT_FALSE(nothing);
        EXPECT_NE(c.message.find("/nonexistent/guest"), std::string::npos) << c.message;
    });
}

TEST_F(WorkerLoad, AnEmptyHandleFailsWithUsageErrorAndSaysWhy) {
    asio::io_context io;
    hl::async_sandbox empty;
    EXPECT_FALSE(empty);
    EXPECT_EQ(hl::test::error_of([&] { (void)empty.interrupt_handle(); }), errc::usage_error);
    EXPECT_EQ(hl::test::error_of([&] { empty.async_call<void>("Spin", [](std::error_code) {}); }), errc::usage_error);
    hl::diagnostics d;
    std::optional<std::error_code> outcome;
    empty.async_call<std::int32_t>("AddLocal", 1, 1,
                                   hl::with_diagnostics(d, asio::bind_executor(io, [&](std::error_code ec, std::int32_t) { outcome = ec; })));
    EXPECT_FALSE(outcome.has_value()) << "completions are never run inside the initiating function";
    io.run();
    EXPECT_EQ(outcome, errc::usage_error);
    EXPECT_NE(d.message.find("empty"), std::string::npos) << d.message;
}

}  // namespace
