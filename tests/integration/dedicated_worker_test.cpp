// SPDX-License-Identifier: Apache-2.0
// The runtime's workers are dedicated call threads (their slice timer stays armed between calls):
// on one worker, runaways in slices, runaways with deadlines, short calls and async host functions
// all end at their own time, and kills still end the runaways.
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <vector>

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
using clock_type = std::chrono::steady_clock;

class DedicatedWorker : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(DedicatedWorker, SlicedRunawaysDeadlinesShortCallsAndAsyncHostFunctionsEachEndAtTheirOwnTime) {
    hl::runtime rt({.workers = 1, .slice = 1ms});
    const auto ex = rt.get_executor(0);
    hl::test::watchdog dog(30s);
    run_on(
        ex,
        [&]() -> awaitable<void> {
            std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
                hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
            };
            auto runaway = co_await make_sandbox(ex);
            auto timed = co_await make_sandbox(ex);
            auto shorts = co_await make_sandbox(ex);
            auto sleeper = co_await make_sandbox(ex, setup);
            for (auto* sb : {&runaway, &timed, &shorts, &sleeper}) dog.watch(sb->interrupt_handle());
            const auto clean = co_await timed.async_snapshot();

            std::optional<std::error_code> spin;
            runaway.async_call<void>("Spin", [&](std::error_code ec) { spin = ec; });
            std::optional<std::error_code> slept;
            int sleeps = 0;
            std::function<void()> sleep_again = [&] {
                sleeper.async_call<std::uint32_t>("SleepOnHost", 2u, [&](std::error_code ec, std::uint32_t ms) {
                    if (ec || ms != 2u || ++sleeps == 20) {
                        slept = ec;
                        return;
                    }
                    sleep_again();
                });
            };
            sleep_again();
            for (int round = 0; round < 10 && !dog.fired(); ++round) {
                for (int i = 0; i < 20; ++i) {
                    EXPECT_EQ(co_await shorts.async_call_for<std::int32_t>(1s, "AddLocal", i, round), i + round);
                }
                const auto timeout = round % 2 == 0 ? std::chrono::nanoseconds(300us) : std::chrono::nanoseconds(7ms);
                const auto before = clock_type::now();
                auto [ec] = co_await timed.async_call_for(timeout, "Spin", as_tuple(use_awaitable));
                EXPECT_EQ(ec, errc::timed_out) << "round " << round;
                EXPECT_GE(clock_type::now() - before, timeout) << "a deadline passed before its time";
                co_await timed.async_restore(clean);
            }
            co_await until_on(ex, [&] { return slept.has_value() || dog.fired(); }, 20s);
            EXPECT_EQ(slept, std::error_code());
            EXPECT_EQ(sleeps, 20);
            EXPECT_FALSE(spin.has_value()) << "the runaway ended by itself";
            runaway.interrupt_handle().kill();
            co_await until_on(ex, [&] { return spin.has_value(); });
            EXPECT_EQ(spin, errc::cancelled);
        },
        40s);
    EXPECT_FALSE(dog.fired());
}

}  // namespace
