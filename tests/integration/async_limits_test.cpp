// SPDX-License-Identifier: Apache-2.0
// CPU-time budgets and default limits in the async runtime: a budget ends a spinning guest on a
// worker, time spent waiting on an asynchronous host function is not charged, and the defaults of
// a pool come before the runtime's, which come before the sandbox's; the pool adds up what its
// calls cost.
#include <asio/bind_executor.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/runtime.hpp"
#include "hl/runtime/sandbox_pool.hpp"
#include "hl/trace.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;
using namespace std::chrono_literals;

class AsyncLimits : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    asio::io_context io;
};

TEST_F(AsyncLimits, ABudgetEndsASpinOnAWorkerAndWaitingForAnAsyncHostFunctionIsNotCharged) {
    hl::runtime rt({.workers = 1});
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto sb = co_await hl::async_sandbox::async_create(
            rt.get_executor(0), hl::test::simpleguest(), {},
            [&](hl::uninitialized_sandbox& u) {
                hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
            },
            asio::bind_executor(io, use_awaitable));
        // 200 ms on the host's timer against 20 ms of CPU and no deadline.
        auto [ec, slept] = co_await sb.async_call_for<std::uint32_t>(
            hl::call_limits{.cpu_time = 20ms}, "SleepOnHost", 200u, asio::bind_executor(io, as_tuple(use_awaitable)));
        EXPECT_FALSE(ec) << ec.message();
        EXPECT_EQ(slept, 200u);
        // A spin in 1 ms slices: the budget adds up over the slices.
        auto [spun] = co_await sb.async_call_for<void>(hl::call_limits{.cpu_time = 20ms}, "Spin",
                                                       asio::bind_executor(io, as_tuple(use_awaitable)));
        EXPECT_EQ(spun, errc::cpu_budget_exceeded);
        EXPECT_NE(sb.last_error().find("CPU-time budget of 20.000 ms"), std::string::npos) << sb.last_error();
    });
}

TEST_F(AsyncLimits, TheRuntimesDefaultsBoundCallsThatSetNone) {
    hl::runtime rt({.workers = 1, .call_limits = {.cpu_time = 15ms}});
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto sb = co_await hl::async_sandbox::async_create(rt.get_executor(0), hl::test::simpleguest(), {}, {},
                                                           asio::bind_executor(io, use_awaitable));
        auto [ec] = co_await sb.async_call<void>("Spin", asio::bind_executor(io, as_tuple(use_awaitable)));
        EXPECT_EQ(ec, errc::cpu_budget_exceeded) << "the runtime's default budget";
        // A deadline of the call's own leaves the default budget in place.
        auto [ec2] = co_await sb.async_call_for<void>(10s, "Spin", asio::bind_executor(io, as_tuple(use_awaitable)));
        EXPECT_EQ(ec2, errc::poisoned) << "the first spin poisoned the sandbox";
        auto other = co_await hl::async_sandbox::async_create(rt.get_executor(0), hl::test::simpleguest(), {}, {},
                                                              asio::bind_executor(io, use_awaitable));
        auto [ec3] = co_await other.async_call_for<void>(10s, "Spin", asio::bind_executor(io, as_tuple(use_awaitable)));
        EXPECT_EQ(ec3, errc::cpu_budget_exceeded);
    });
}

TEST_F(AsyncLimits, APoolsDefaultsComeBeforeTheRuntimesAndACallsOwnBeforeBoth) {
    // The runtime's deadline is long; the pool's budget is short.
    hl::runtime rt({.workers = 1, .call_limits = {.timeout = 20s}});
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto pool = co_await hl::sandbox_pool::async_create(
            ex, hl::test::simpleguest(), hl::sandbox_config{}.set_call_limits({.timeout = 5ms}), {},
            {.min_size = 1, .max_size = 1, .runtime = &rt, .call_limits = {.cpu_time = 10ms}});
        const auto start = std::chrono::steady_clock::now();
        auto [ec] = co_await pool.async_call<void>("Spin", as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::cpu_budget_exceeded) << "the pool's budget, before the sandbox's 5 ms deadline";
        // The call's own deadline comes first; the pool's budget still applies beside it.
        auto [ec2] = co_await pool.async_call_for<void>(hl::call_limits{.timeout = 30s, .cpu_time = 25ms}, "Spin",
                                                        as_tuple(use_awaitable));
        EXPECT_EQ(ec2, errc::cpu_budget_exceeded);
        EXPECT_LT(std::chrono::steady_clock::now() - start, 20s) << "the runtime's 20 s deadline did not end them";
        // A lease's calls have the pool's defaults too.
        auto lease = co_await pool.async_acquire();
        auto [ec3] = co_await lease.async_call<void>("Spin", as_tuple(use_awaitable));
        EXPECT_EQ(ec3, errc::cpu_budget_exceeded);
        lease.release();
        // Without a spin, the limits cost nothing and the pool counts what its calls used.
        EXPECT_EQ(co_await pool.async_call<std::int32_t>("AddLocal", 2, 3), 5);
        const auto stats = pool.stats();
        EXPECT_EQ(stats.usage.calls, 3u) << "two pool calls and this one; the lease's call is not a pool call";
        EXPECT_GE(stats.usage.cpu_time, 10ms + 25ms);
        EXPECT_GE(stats.usage.vm_exits, 3u);
    });
}

TEST_F(AsyncLimits, AnAsyncCallsTraceShowsItsWaitItsRunsAndItsAsyncHostCall) {
    hl::runtime rt({.workers = 1});
    auto trace = std::make_shared<hl::trace_recorder>();
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto sb = co_await hl::async_sandbox::async_create(
            rt.get_executor(0), hl::test::simpleguest(), hl::sandbox_config{}.set_trace(trace),
            [&](hl::uninitialized_sandbox& u) {
                hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
            },
            asio::bind_executor(io, use_awaitable));
        trace->start();
        EXPECT_EQ(co_await sb.async_call<std::uint32_t>("SleepOnHost", 20u, asio::bind_executor(io, use_awaitable)),
                  20u);
    });
    trace->stop();
    std::vector<hl::trace_recorder::event> queued, calls, hosts, runs;
    for (const auto& e : trace->events()) {
        if (e.name == "queued SleepOnHost") queued.push_back(e);
        if (e.name == "call SleepOnHost") calls.push_back(e);
        if (e.name == "host_call HostSleep") hosts.push_back(e);
        if (e.name == "run") runs.push_back(e);
    }
    ASSERT_EQ(queued.size(), 1u);
    ASSERT_EQ(calls.size(), 1u);
    ASSERT_EQ(hosts.size(), 1u);
    EXPECT_EQ(hosts[0].detail, "asynchronous");
    EXPECT_GE(hosts[0].duration_ns, 20'000'000) << "from the guest's stop to the timer's answer";
    EXPECT_EQ(queued[0].start_ns + queued[0].duration_ns, calls[0].start_ns) << "the wait ends where the call starts";
    ASSERT_GE(runs.size(), 2u) << "one run up to the host call, one after its answer";
    // Events on one track nest or follow each other: the wait lies between two runs.
    for (const auto& r : runs) {
        const bool before = r.start_ns + r.duration_ns <= hosts[0].start_ns;
        const bool after = r.start_ns >= hosts[0].start_ns + hosts[0].duration_ns;
        EXPECT_TRUE(before || after) << "a run overlaps the host call's wait";
    }
}

TEST_F(AsyncLimits, NegativeDefaultsAreRefusedWhereTheyAreGiven) {
    EXPECT_THROW(hl::runtime({.workers = 1, .call_limits = {.cpu_time = -1ms}}), hl::error);
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto [ec, pool] = co_await hl::sandbox_pool::async_create(
            io.get_executor(), hl::test::simpleguest(), {}, {}, {.call_limits = {.timeout = -1s}},
            as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::usage_error);
        EXPECT_FALSE(pool);
    });
}

}  // namespace
