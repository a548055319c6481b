// SPDX-License-Identifier: Apache-2.0
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>
#include <type_traits>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/runtime.hpp"

namespace {

// A handle is the sandbox: a copy would outlive what it was given for.
static_assert(!std::is_copy_constructible_v<hl::async_sandbox>);
static_assert(!std::is_copy_assignable_v<hl::async_sandbox>);
static_assert(std::is_nothrow_move_constructible_v<hl::async_sandbox>);
static_assert(std::is_nothrow_move_assignable_v<hl::async_sandbox>);

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;

using Async = hl::test::async_test;

TEST_F(Async, CallsWithTheDefaultTokenInACoroutine) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        std::string r = co_await sb.async_call<std::string>("Echo", std::string("hi"));
        EXPECT_EQ(r, "hi");
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", 40, 2, use_awaitable), 42);
    });
}

TEST_F(Async, ReportsErrorsThroughAsTuple) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        auto [ec, r] = co_await sb.async_call<std::int32_t>("NoSuchFunction", asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::unknown_function);
        EXPECT_EQ(r, 0);
        EXPECT_NE(sb.last_error().find("NoSuchFunction"), std::string::npos) << sb.last_error();
        auto [ec2, r2] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 2, asio::experimental::as_tuple(use_awaitable));
        EXPECT_FALSE(ec2);
        EXPECT_EQ(r2, 3);
    });
}

TEST_F(Async, ThrowsErrorsIntoTheCoroutineWithUseAwaitable) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        try {
            co_await sb.async_call<void>("ReturnGuestError", 7, std::string("nope"));
            ADD_FAILURE() << "no exception";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code(), errc::guest_error);
        }
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("AddLocal", 2, 2), 4);
    });
}

TEST_F(Async, CompletesPlainCallbacksOnTheirExecutorNotTheVcpuThread) {
    std::optional<hl::async_sandbox> sb;
    hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {}, {},
                                    [&](std::error_code ec, hl::async_sandbox s) {
                                        ASSERT_FALSE(ec);
                                        sb.emplace(std::move(s));
                                    });
    io.run();
    ASSERT_TRUE(sb && *sb);
    io.restart();
    const auto io_thread = std::this_thread::get_id();
    std::vector<std::int32_t> order;
    for (int i = 0; i < 100; ++i) {
        sb->async_call<std::int32_t>("IncrementCounter", [&](std::error_code ec, std::int32_t v) {
            EXPECT_FALSE(ec);
            EXPECT_EQ(std::this_thread::get_id(), io_thread);
            order.push_back(v);
        });
    }
    io.run();  // returns only when all 100 completions ran: the work is tracked
    ASSERT_EQ(order.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i + 1) << "calls queued to one sandbox run in order";
}

TEST_F(Async, WorksWithUseFuture) {
    auto work = asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });
    auto sb = hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {}, {}, asio::use_future).get();
    EXPECT_EQ(sb.async_call<std::string>("Echo", std::string("future"), asio::use_future).get(), "future");
    auto snap = sb.async_snapshot(asio::use_future).get();
    EXPECT_EQ(sb.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 1);
    sb.async_restore(snap, asio::use_future).get();
    EXPECT_EQ(sb.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 1);
    work.reset();
    loop.join();
}

TEST_F(Async, AUseFutureCompletionRunsOnTheWorkerNotThroughTheSystemContext) {
    // use_future's handlers may run on any thread: the sandbox's worker sets the promise itself.
    // Deferred through asio::system_context it would take one more hop, and a worker (which may
    // outlive main()) could post into that context while the process's exit destroys it.
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    std::promise<std::thread::id> worker;
    asio::post(ex, [&] { worker.set_value(std::this_thread::get_id()); });
    const auto worker_thread = worker.get_future().get();
    auto sb = hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, {}, asio::use_future).get();
    auto echoed = sb.async_call<std::string>("Echo", std::string("where"),
                                             asio::use_future([](std::error_code ec, std::string s) {
                                                 return std::make_pair(ec ? std::string() : s, std::this_thread::get_id());
                                             }));
    const auto [text, ran_on] = echoed.get();
    EXPECT_EQ(text, "where");
    EXPECT_EQ(ran_on, worker_thread);
}

TEST_F(Async, RunsAThousandConcurrentCoroutinesOverEightSandboxes) {
    std::vector<hl::async_sandbox> boxes;
    run([&]() -> awaitable<void> {
        for (int i = 0; i < 8; ++i) boxes.push_back(co_await make());
    });
    io.restart();
    std::atomic<int> checked{0};
    for (int i = 0; i < 1000; ++i) {
        asio::co_spawn(io, [&, i]() -> awaitable<void> {
            auto& sb = boxes[static_cast<std::size_t>(i) % boxes.size()];
            const std::string text = "request " + std::to_string(i);
            EXPECT_EQ(co_await sb.async_call<std::string>("Echo", text), text);
            EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", i, 1), i + 1);
            ++checked;
        }, asio::detached);
    }
    io.run();
    EXPECT_EQ(checked.load(), 1000);
}

TEST_F(Async, CancelsSpinWhenATimerWinsTheRace) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        auto snap = co_await sb.async_snapshot();
        asio::steady_timer timer(io, 30ms);
        auto winner = co_await (sb.async_call<void>("Spin", asio::experimental::as_tuple(use_awaitable)) ||
                                timer.async_wait(use_awaitable));
        EXPECT_EQ(winner.index(), 1u) << "the timer finished first";
        // The call was interrupted and the sandbox poisoned: a restore brings it back.
        auto [ec, v] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 1, asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::poisoned);
        co_await sb.async_restore(snap);
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("AddLocal", 1, 1), 2);
    });
}

TEST_F(Async, ACancelledRunningCallCompletesWithCancelled) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        asio::cancellation_signal signal;
        asio::steady_timer timer(io, 20ms);
        timer.async_wait([&](std::error_code) { signal.emit(asio::cancellation_type::terminal); });
        auto [ec] = co_await sb.async_call<void>(
            "Spin", asio::bind_cancellation_slot(signal.slot(), asio::experimental::as_tuple(use_awaitable)));
        EXPECT_EQ(ec, errc::cancelled);
    });
}

TEST_F(Async, ACallCancelledBeforeItStartsNeverRuns) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        asio::cancellation_signal signal;
        std::error_code second;
        bool second_done = false;
        // The first call keeps the vCPU busy; the second waits in the queue and is cancelled there.
        auto first = sb.async_call<std::uint64_t>("LoopFor", std::uint64_t{3'000'000}, asio::use_future);
        sb.async_call<std::int32_t>("IncrementCounter",
                                    asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, std::int32_t) {
                                        second = ec;
                                        second_done = true;
                                    }));
        signal.emit(asio::cancellation_type::terminal);
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("IncrementCounter"), 1) << "the cancelled call did not run";
        EXPECT_TRUE(second_done);
        EXPECT_EQ(second, asio::error::operation_aborted);
        EXPECT_EQ(first.get(), 3'000'000u);
    });
}

TEST_F(Async, AsyncHostFunctionsAwaitATimerAndReadAFileWithoutBlockingTheLoop) {
    const auto dir = std::filesystem::temp_directory_path() / ("hl-async-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "data.bin", std::ios::binary) << "file contents via io_uring";
    run([&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto sb = co_await hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
            hl::register_async_host_function(u, "HostReadFile", ex, hl::file_reader_host_function(ex, dir));
        });
        // While the guest waits 50 ms on the host's timer, the event loop keeps serving this timer.
        bool loop_was_free = false;
        asio::steady_timer probe(io, 10ms);
        probe.async_wait([&](std::error_code) { loop_was_free = true; });
        EXPECT_EQ(co_await sb.async_call<std::uint32_t>("SleepOnHost", 50u), 50u);
        EXPECT_TRUE(loop_was_free);

        const auto bytes = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("data.bin"));
        EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "file contents via io_uring");

        auto [ec, none] = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("../etc/passwd"),
                                                                            asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::host_function_error) << "paths may not leave the root";
        auto [ec2, none2] = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("missing.bin"),
                                                                              asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec2, errc::host_function_error);
    });
    std::filesystem::remove_all(dir);
}

TEST_F(Async, CancellingACallReachesTheCoroutineHostFunctionItWaitsOn) {
    run([&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto sb = co_await hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
        });
        const auto start = std::chrono::steady_clock::now();
        asio::steady_timer timer(io, 30ms);
        auto winner = co_await (sb.async_call<std::uint32_t>("SleepOnHost", 60'000u, asio::experimental::as_tuple(use_awaitable)) ||
                                timer.async_wait(use_awaitable));
        EXPECT_EQ(winner.index(), 1u);
        // The guest waited on a 60 s timer; the cancellation ended that wait, not the timer.
        EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
        auto [ec, v] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 1, asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::poisoned);
    });
}

TEST_F(Async, ExceptionsThrownInsideCoroutinesReachTheirCompletion) {
    bool caught = false;
    asio::co_spawn(io, [&]() -> awaitable<void> {
        auto sb = co_await make();
        co_await sb.async_call<void>("WriteNull");  // throws std::system_error(guest_fault)
    }, [&](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            caught = x.code() == errc::guest_fault;
        }
    });
    io.run();
    EXPECT_TRUE(caught);
}

TEST_F(Async, ShutdownWithCallsInFlightCompletesThemAll) {
    int aborted = 0, cancelled = 0, other = 0;
    {
        std::optional<hl::async_sandbox> sb;
        run([&]() -> awaitable<void> { sb.emplace(co_await make()); });
        io.restart();
        sb->async_call<void>("Spin", [&](std::error_code ec) { (ec == errc::cancelled ? cancelled : other)++; });
        for (int i = 0; i < 5; ++i) {
            sb->async_call<std::int32_t>("AddLocal", 1, 1, [&](std::error_code ec, std::int32_t) {
                (ec == asio::error::operation_aborted ? aborted : other)++;
            });
        }
        while (!sb->interrupt_handle().running()) std::this_thread::sleep_for(1ms);
        sb.reset();  // kills Spin, aborts the queue, joins the vCPU thread
    }
    io.run();
    EXPECT_EQ(cancelled, 1);
    EXPECT_EQ(aborted, 5);
    EXPECT_EQ(other, 0);
}

TEST_F(Async, CreationFailuresArriveAsErrors) {
    std::error_code error;
    bool empty = false;
    hl::async_sandbox::async_create(io.get_executor(), "/nonexistent.elf", {}, {},
                                    [&](std::error_code ec, hl::async_sandbox sb) {
                                        error = ec;
                                        empty = !sb;
                                    });
    io.run();
    EXPECT_EQ(error, errc::invalid_guest);
    EXPECT_TRUE(empty);
}

TEST_F(Async, ACancellationAtAnyMomentOfACallEndsIt) {
    hl::test::watchdog dog(20s);
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        dog.watch(sb.interrupt_handle());
        auto clean = co_await sb.async_snapshot();
        std::mt19937 rng(7);
        for (int round = 0; round < 50 && !dog.fired(); ++round) {
            asio::cancellation_signal signal;
            std::optional<std::error_code> outcome;
            sb.async_call<void>("Spin", asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec) { outcome = ec; }));
            // From still queued, through taken by the vCPU thread but not yet in the guest, to in it.
            const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 300)(rng));
            for (const auto until = std::chrono::steady_clock::now() + delay; std::chrono::steady_clock::now() < until;) {
            }
            signal.emit(asio::cancellation_type::terminal);
            co_await until([&] { return outcome.has_value() || dog.fired(); }, 30s);
            if (!outcome) break;  // the watchdog failed the test
            EXPECT_TRUE(*outcome == errc::cancelled || *outcome == asio::error::operation_aborted) << outcome->message();
            co_await sb.async_restore(clean);
        }
        EXPECT_FALSE(dog.fired());
    });
}

}  // namespace
