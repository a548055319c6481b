// SPDX-License-Identifier: Apache-2.0
// The runtime's workers: where calls run, slicing, deadlines, async host functions, shutdown.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <ctime>
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

class Workers : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

std::thread::id thread_of(const hl::runtime::executor_type& ex) {
    std::promise<std::thread::id> id;
    asio::post(ex, [&] { id.set_value(std::this_thread::get_id()); });
    return id.get_future().get();
}

TEST_F(Workers, ACallAwaitedOnTheSandboxsWorkerRunsThereWithoutAHop) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::thread::id host_thread;
        bool marker_ran = false, marker_ran_before_host = true;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] {
                host_thread = std::this_thread::get_id();
                marker_ran_before_host = marker_ran;
            });
        };
        auto sb = co_await make_sandbox(ex, setup);
        for (int i = 0; i < 3; ++i) {
            marker_ran = false;
            // Queued on the worker before the call: a call passed through the worker's queue would
            // run after it; one run inline runs before it.
            asio::post(ex, [&] { marker_ran = true; });
            co_await sb.async_call<void>("VoidThroughHost");
            EXPECT_EQ(host_thread, std::this_thread::get_id());
            EXPECT_FALSE(marker_ran_before_host) << "the call went through the worker's queue";
        }
    });
}

TEST_F(Workers, ACallFromAnotherExecutorRunsOnTheWorkerAndCompletesOnTheCaller) {
    hl::runtime rt({.workers = 2});
    const auto worker_thread = thread_of(rt.get_executor(1));
    asio::io_context io;
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        std::thread::id host_thread;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] { host_thread = std::this_thread::get_id(); });
        };
        // Lives on worker 1; completions default to the io_context the coroutine runs on.
        auto sb = co_await hl::async_sandbox::async_create(rt.get_executor(1), hl::test::simpleguest(), {}, setup,
                                                           asio::bind_executor(io, use_awaitable));
        const auto here = std::this_thread::get_id();
        co_await sb.async_call<void>("VoidThroughHost", asio::bind_executor(io, use_awaitable));
        EXPECT_EQ(host_thread, worker_thread);
        EXPECT_NE(host_thread, here);
        EXPECT_EQ(std::this_thread::get_id(), here);
        std::optional<std::thread::id> completed_on;
        sb.async_call<std::int32_t>("AddLocal", 1, 2, asio::bind_executor(io, [&](std::error_code ec, std::int32_t r) {
                                        EXPECT_FALSE(ec);
                                        EXPECT_EQ(r, 3);
                                        completed_on = std::this_thread::get_id();
                                    }));
        co_await hl::test::until(io, [&] { return completed_on.has_value(); });
        EXPECT_EQ(completed_on, here);
    });
}

TEST_F(Workers, AShortCallCompletesWhileARunawayGuestRunsOnTheSameWorker) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto runaway = co_await make_sandbox(ex);
        auto other = co_await make_sandbox(ex);
        std::optional<std::error_code> spin;
        runaway.async_call<void>("Spin", [&](std::error_code ec) { spin = ec; });
        for (int i = 0; i < 20; ++i) EXPECT_EQ(co_await other.async_call<std::int32_t>("AddLocal", i, 1), i + 1);
        // The worker's own timers run too.
        asio::steady_timer timer(ex, 2ms);
        co_await timer.async_wait(use_awaitable);
        EXPECT_FALSE(spin.has_value()) << "the runaway guest ended by itself?";
        EXPECT_TRUE(runaway.interrupt_handle().running());
        runaway.interrupt_handle().kill();
        co_await until_on(ex, [&] { return spin.has_value(); });
        EXPECT_EQ(spin, errc::cancelled);
    });
}

// The worker's CPU clock tells whether the runaway guest ran in between: it runs on this thread.
std::chrono::nanoseconds thread_cpu_time() {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
}

TEST_F(Workers, ACallMadeWhenATimerFiresDuringARunawaysSliceCompletesBeforeTheRunawaysNextSlice) {
    constexpr auto slice = 200ms;
    hl::runtime rt({.workers = 1, .slice = slice});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto runaway = co_await make_sandbox(ex);
        auto other = co_await make_sandbox(ex);
        co_await other.async_call<std::int32_t>("AddLocal", 0, 1);  // first-call costs
        std::optional<std::error_code> spin;
        // Starts inline: its first slice runs here, and the next begins once this coroutine waits.
        runaway.async_call<void>("Spin", [&](std::error_code ec) { spin = ec; });
        for (int round = 0; round < 3; ++round) {
            // Falls due in the middle of the runaway's slice. The timer's handler, and then the
            // completion of the call it makes, must both go ahead of the runaway's next slice: from
            // here to the completion the runaway runs one slice, not two. Counted in this thread's
            // CPU time (the guest runs on it), which a loaded machine does not stretch.
            const auto before = thread_cpu_time();
            asio::steady_timer timer(ex, slice / 2);
            co_await timer.async_wait(use_awaitable);
            EXPECT_EQ(co_await other.async_call<std::int32_t>("AddLocal", round, 1), round + 1);
            const auto spent = thread_cpu_time() - before;
            EXPECT_LT(spent, slice * 3 / 2) << "round " << round << ": the runaway ran another slice first";
        }
        EXPECT_FALSE(spin.has_value());
        runaway.interrupt_handle().kill();
        co_await until_on(ex, [&] { return spin.has_value(); });
        EXPECT_EQ(spin, errc::cancelled);
    });
}

TEST_F(Workers, AShortCallFromAnotherExecutorCompletesWhileARunawayGuestRunsOnItsWorker) {
    hl::runtime rt({.workers = 1});
    asio::io_context io;
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto runaway = co_await make_sandbox(rt.get_executor(0));
        auto other = co_await make_sandbox(rt.get_executor(0));
        asio::cancellation_signal stop;
        std::optional<std::error_code> spin;
        runaway.async_call<void>("Spin", asio::bind_cancellation_slot(
                                             stop.slot(), asio::bind_executor(io, [&](std::error_code ec) { spin = ec; })));
        for (int i = 0; i < 20; ++i) {
            EXPECT_EQ(co_await other.async_call<std::int32_t>("AddLocal", i, 2, asio::bind_executor(io, use_awaitable)), i + 2);
        }
        EXPECT_FALSE(spin.has_value());
        EXPECT_TRUE(runaway.interrupt_handle().running());
        stop.emit(asio::cancellation_type::terminal);
        co_await hl::test::until(io, [&] { return spin.has_value(); });
        EXPECT_EQ(spin, errc::cancelled);
    });
}

awaitable<void> keep_busy(asio::any_io_executor ex, std::shared_ptr<const std::atomic<bool>> stop) {
    while (!*stop) co_await asio::post(ex, use_awaitable);
}

// Keeps a worker from ever being idle while it lives: a coroutine that re-posts itself (and holds
// its flag, as it may run once more after this is gone).
class busy_worker {
public:
    explicit busy_worker(asio::any_io_executor ex) { asio::co_spawn(ex, keep_busy(ex, stop_), asio::detached); }
    ~busy_worker() { *stop_ = true; }
    busy_worker(const busy_worker&) = delete;
    busy_worker& operator=(const busy_worker&) = delete;

private:
    std::shared_ptr<std::atomic<bool>> stop_ = std::make_shared<std::atomic<bool>>(false);
};

// With a sliced share this small, a call past its slice waits about a day for a busy worker
// (runtime_options::sliced_share): only a kill, its deadline or the worker going idle resumes it.
constexpr double tiny_share = 1e-9;

TEST_F(Workers, AKillEndsTheWaitOfACallPastItsSliceOnABusyWorker) {
    hl::runtime rt({.workers = 1, .slice = 1ms, .sliced_share = tiny_share});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto sb = co_await make_sandbox(ex);
        const busy_worker busy(ex);
        asio::cancellation_signal cancel;
        std::optional<std::error_code> outcome;
        sb.async_call<void>("Spin", asio::bind_cancellation_slot(cancel.slot(), [&](std::error_code ec) { outcome = ec; }));
        asio::steady_timer past_a_slice(ex, 20ms);
        co_await past_a_slice.async_wait(use_awaitable);
        EXPECT_FALSE(outcome.has_value());
        cancel.emit(asio::cancellation_type::terminal);
        co_await until_on(ex, [&] { return outcome.has_value(); }, 30s);
        EXPECT_EQ(outcome, errc::cancelled);
    });
}

TEST_F(Workers, TheDeadlineEndsTheWaitOfACallPastItsSliceOnABusyWorker) {
    hl::runtime rt({.workers = 1, .slice = 1ms, .sliced_share = tiny_share});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto sb = co_await make_sandbox(ex);
        const busy_worker busy(ex);
        auto [ec] = co_await sb.async_call_for(20ms, "Spin", as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::timed_out);
    });
}

TEST_F(Workers, OnAnIdleWorkerACallPastItsSliceGoesOnAtOnce) {
    hl::runtime rt({.workers = 1, .slice = 1ms, .sliced_share = tiny_share});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto sb = co_await make_sandbox(ex);
        // Many slices; were each one's wait not ended by the idle worker, the deadline would end the call.
        EXPECT_EQ(co_await sb.async_call_for<std::uint64_t>(30s, "LoopFor", std::uint64_t{20'000'000}), 20'000'000u);
    });
}

TEST_F(Workers, OnABusyWorkerACallPastItsSliceStillGetsItsShare) {
    hl::runtime rt({.workers = 1, .slice = 1ms, .sliced_share = 0.5});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto sb = co_await make_sandbox(ex);
        const busy_worker busy(ex);
        EXPECT_EQ(co_await sb.async_call_for<std::uint64_t>(30s, "LoopFor", std::uint64_t{20'000'000}), 20'000'000u);
    });
}

TEST(RuntimeOptions, ASlicedShareOutsideZeroToOneIsRefused) {
    for (const double share : {0.0, -0.5, 1.5, std::nan("")}) {
        try {
            hl::runtime rt({.workers = 1, .sliced_share = share});
            ADD_FAILURE() << "accepted " << share;
        } catch (const hl::error& e) {
            EXPECT_EQ(e.code(), errc::usage_error);
            EXPECT_NE(std::string(e.what()).find("sliced_share"), std::string::npos) << e.what();
        }
    }
    hl::runtime one({.workers = 1, .sliced_share = 1.0});
    EXPECT_EQ(one.size(), 1u);
}

TEST_F(Workers, DeadlinesShorterEqualAndLongerThanASliceAreHonoured) {
    hl::runtime rt({.workers = 1, .slice = 2ms});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        auto sb = co_await make_sandbox(ex);
        auto clean = co_await sb.async_snapshot();
        for (const auto timeout : {std::chrono::nanoseconds(300us), std::chrono::nanoseconds(2ms),
                                   std::chrono::nanoseconds(7ms)}) {
            hl::diagnostics d;
            auto [ec] = co_await sb.async_call_for(timeout, "Spin", hl::with_diagnostics(d, as_tuple(use_awaitable)));
            EXPECT_EQ(ec, errc::timed_out) << timeout.count() << " ns";
            EXPECT_FALSE(d.message.empty());
            co_await sb.async_restore(clean);
            // A call that ends in time is not affected by its deadline. Not asked of 300 us: the
            // first call after a restore takes longer than that on a slow day under PVM (an exit
            // alone has cost 106 us), and this test must not depend on the machine's speed.
            if (timeout >= 2ms) {
                EXPECT_EQ(co_await sb.async_call_for<std::int32_t>(timeout, "AddLocal", 2, 2), 4);
            }
        }
        // A call longer than many slices, with a deadline far away, finishes with its result.
        EXPECT_EQ(co_await sb.async_call_for<std::uint64_t>(30s, "LoopFor", std::uint64_t{20'000'000}), 20'000'000u);
    });
}

TEST_F(Workers, ALongAsyncHostFunctionLeavesTheWorkerServingOtherSandboxes) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    hl::test::watchdog dog(20s);
    run_on(ex, [&]() -> awaitable<void> {
        // The host function returns only once the other sandbox has served its calls: were the
        // worker blocked in it, neither would ever finish (the watchdog would say so).
        bool open = false;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, [&](std::uint32_t) -> awaitable<void> {
                co_await until_on(ex, [&] { return open || dog.fired(); }, 30s);
            });
        };
        auto waiting = co_await make_sandbox(ex, setup);
        dog.watch(waiting.interrupt_handle());
        auto other = co_await make_sandbox(ex);
        std::optional<std::error_code> slept;
        waiting.async_call<std::uint32_t>("SleepOnHost", 5u, [&](std::error_code ec, std::uint32_t) { slept = ec; });
        for (int i = 0; i < 20; ++i) EXPECT_EQ(co_await other.async_call<std::int32_t>("AddLocal", i, 3), i + 3);
        EXPECT_FALSE(slept.has_value());
        open = true;
        co_await until_on(ex, [&] { return slept.has_value(); });
        EXPECT_EQ(slept, std::error_code());
    });
}

TEST_F(Workers, AFailingAsyncHostFunctionFailsTheCallWithItsMessage) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, [ex](std::uint32_t) -> awaitable<void> {
                asio::steady_timer t(ex, 1ms);
                co_await t.async_wait(use_awaitable);
                throw std::runtime_error("the disk is on fire");
            });
        };
        auto sb = co_await make_sandbox(ex, setup);
        hl::diagnostics d;
        auto [ec, v] = co_await sb.async_call<std::uint32_t>("SleepOnHost", 1u, hl::with_diagnostics(d, as_tuple(use_awaitable)));
        EXPECT_EQ(ec, errc::host_function_error);
        EXPECT_NE(d.message.find("the disk is on fire"), std::string::npos) << d.message;
        // The sandbox goes on serving.
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("AddLocal", 1, 1), 2);
    });
}

TEST_F(Workers, AKillWhileTheAsyncHostFunctionWaitsCancelsItsCoroutineAndTheCall) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<std::error_code> host_saw;
        bool waiting = false;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, [&](std::uint32_t) -> awaitable<void> {
                asio::steady_timer t(ex, 60s);
                waiting = true;
                auto [ec] = co_await t.async_wait(as_tuple(use_awaitable));
                host_saw = ec;
            });
        };
        auto sb = co_await make_sandbox(ex, setup);
        std::optional<std::error_code> outcome;
        sb.async_call<std::uint32_t>("SleepOnHost", 60'000u, [&](std::error_code ec, std::uint32_t) { outcome = ec; });
        co_await until_on(ex, [&] { return waiting; });
        std::thread([h = sb.interrupt_handle()] { h.kill(); }).join();  // from another thread
        co_await until_on(ex, [&] { return outcome.has_value(); });
        EXPECT_EQ(host_saw, asio::error::operation_aborted);
        EXPECT_EQ(outcome, errc::cancelled);
    });
}

TEST_F(Workers, TheThreadCountStaysAtTheWorkersWithTwoHundredSandboxes) {
    hl::runtime rt({.workers = 2});
    asio::io_context io;
    const int before = hl::test::thread_count();
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto first = co_await make_sandbox(rt.get_executor(0));
        auto snap = co_await first.async_snapshot(asio::bind_executor(io, use_awaitable));
        std::vector<hl::async_sandbox> many;
        for (int i = 0; i < 200; ++i) {
            many.push_back(co_await hl::async_sandbox::async_create_from(rt.get_executor(), snap, {},
                                                                         asio::bind_executor(io, use_awaitable)));
        }
        for (std::size_t i = 0; i < many.size(); i += 37) {
            EXPECT_EQ(co_await many[i].async_call<std::int32_t>("AddLocal", 1, 1, asio::bind_executor(io, use_awaitable)), 2);
        }
        EXPECT_EQ(hl::test::thread_count(), before);
    });
}

}  // namespace
