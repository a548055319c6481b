// SPDX-License-Identifier: Apache-2.0
// CPU-time budgets and the accounting behind them (hl::call_limits, hl::call_usage) on the
// synchronous API: a budget ends a guest that spins, whether in the guest or in a host function,
// and does not count time the call spends waiting; defaults come from the configuration; the
// sandbox counts its calls, exits and host calls.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;
using hl::value_type;
using status = hl::guest_call::status;
using namespace std::chrono_literals;
using hl::test::error_of;

hl::multi_use_sandbox make(hl::sandbox_config config = {}) {
    return hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config).evolve();
}

// A host function that blocks: "HostSleep" sleeps its milliseconds, using no CPU.
hl::multi_use_sandbox make_with_sleep(hl::sandbox_config config = {}) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
    u.register_host_function("HostSleep",
                             [](std::uint32_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); });
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

std::string message_of(auto&& f) {
    try {
        f();
    } catch (const hl::error& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

class CallLimits : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(CallLimits, ACpuBudgetEndsASpinningGuestWithItsOwnCodeAndPoisons) {
    auto sb = make();
    const auto snap = sb.snapshot();
    const std::string message = message_of([&] { sb.call_for<void>(hl::call_limits{.cpu_time = 20ms}, "Spin"); });
    EXPECT_NE(message.find("CPU-time budget of 20.000 ms"), std::string::npos) << message;
    EXPECT_TRUE(sb.poisoned());
    EXPECT_TRUE(hl::is_poisoning(hl::errc::cpu_budget_exceeded));
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("AddLocal", 1, 2); }), errc::poisoned);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
    EXPECT_EQ(error_of([&] { sb.call_for<void>(hl::call_limits{.cpu_time = 5ms}, "Spin"); }),
              errc::cpu_budget_exceeded);
}

TEST_F(CallLimits, TheSpinUsedAtLeastItsBudgetAndTheSandboxAccountsForIt) {
    auto sb = make();
    const auto before = sb.usage();
    EXPECT_EQ(error_of([&] { sb.call_for<void>(hl::call_limits{.cpu_time = 30ms}, "Spin"); }),
              errc::cpu_budget_exceeded);
    const auto after = sb.usage();
    EXPECT_EQ(after.calls, before.calls + 1);
    EXPECT_GE(after.cpu_time - before.cpu_time, 30ms) << "the budget ended the call before it was used up";
    // Loose: a budget check is due every 20 us of wall time once the budget could be gone; this
    // only catches a budget that is not enforced at all (the guest spins for ever).
    EXPECT_LT(after.cpu_time - before.cpu_time, 30ms + 2s);
    EXPECT_GE(after.vm_exits, before.vm_exits + 1);
}

TEST_F(CallLimits, TimeInABlockingHostFunctionIsNotCharged) {
    auto sb = make_with_sleep();
    // 200 ms asleep in the host against a 20 ms budget and no deadline.
    EXPECT_EQ(sb.call_for<std::uint32_t>(hl::call_limits{.cpu_time = 20ms}, "SleepOnHost", 200u), 200u);
    EXPECT_FALSE(sb.poisoned());
    EXPECT_LT(sb.usage().cpu_time, 20ms);
    EXPECT_EQ(sb.usage().host_calls, 1u);
}

TEST_F(CallLimits, ASynchronousHostFunctionThatSpinsIsChargedAndSeesTheBudgetGone) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    int polls = 0;
    u.register_host_function("HostSleep", [&polls](std::uint32_t) {
        while (!hl::current_call_interrupted()) ++polls;  // burns the call's CPU on the host
    });
    auto sb = std::move(u).evolve();
    EXPECT_EQ(error_of([&] { sb.call_for<std::uint32_t>(hl::call_limits{.cpu_time = 20ms}, "SleepOnHost", 1u); }),
              errc::cpu_budget_exceeded);
    EXPECT_GT(polls, 0);
    EXPECT_GE(sb.usage().cpu_time, 20ms);
}

TEST_F(CallLimits, ADeadlineAndABudgetTogetherEndTheCallByWhicheverComesFirst) {
    auto sb = make_with_sleep();
    const auto snap = sb.snapshot();
    // Asleep in the host, the deadline passes first.
    EXPECT_EQ(error_of([&] {
                  sb.call_for<std::uint32_t>(hl::call_limits{.timeout = 30ms, .cpu_time = 10s}, "SleepOnHost", 200u);
              }),
              errc::timed_out);
    sb.restore(snap);
    // Spinning, the budget is gone long before a deadline of 10 s.
    EXPECT_EQ(error_of([&] { sb.call_for<void>(hl::call_limits{.timeout = 10s, .cpu_time = 10ms}, "Spin"); }),
              errc::cpu_budget_exceeded);
}

TEST_F(CallLimits, TheConfigurationGivesEveryCallItsDefaultsFieldByField) {
    auto sb = make_with_sleep(hl::sandbox_config{}.set_call_limits({.timeout = 10s, .cpu_time = 15ms}));
    const auto snap = sb.snapshot();
    EXPECT_EQ(sb.default_call_limits(), (hl::call_limits{10s, 15ms}));
    EXPECT_EQ(error_of([&] { sb.call<void>("Spin"); }), errc::cpu_budget_exceeded) << "call() has a budget now";
    sb.restore(snap);
    // The call's own timeout replaces the default's; the budget stays the default's.
    EXPECT_EQ(error_of([&] { sb.call_for<std::uint32_t>(20ms, "SleepOnHost", 200u); }), errc::timed_out);
    sb.restore(snap);
    // A snapshot's sandboxes have the configuration's defaults too.
    auto copy = hl::multi_use_sandbox::from_snapshot(snap);
    EXPECT_EQ(copy.default_call_limits(), (hl::call_limits{10s, 15ms}));
    EXPECT_EQ(error_of([&] { copy.call<void>("Spin"); }), errc::cpu_budget_exceeded);
    // Replaced defaults: a sleep of 200 ms within a deadline of 1 s and no budget.
    sb.set_default_call_limits({.timeout = 1s});
    EXPECT_EQ(sb.call<std::uint32_t>("SleepOnHost", 200u), 200u);
    auto call =
        sb.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{1}, std::int32_t{2}});
    EXPECT_EQ(call.limits(), (hl::call_limits{1s, {}}));
    EXPECT_EQ(call.run(), status::finished);
    EXPECT_EQ(call.usage().calls, 1u);
}

TEST_F(CallLimits, InitialisationIsNotBoundByTheCallsDefaults) {
    // Each call has 1 ns of CPU: every call fails, but the sandbox is created.
    auto sb = make(hl::sandbox_config{}.set_call_limits({.cpu_time = 1ns}));
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("AddLocal", 1, 2); }), errc::cpu_budget_exceeded);
}

TEST_F(CallLimits, TheLargestLimitsMeanNoLimitAndOverflowNothing) {
    auto sb = make();
    constexpr auto most = std::chrono::nanoseconds::max();
    EXPECT_EQ(sb.call_for<std::int32_t>(hl::call_limits{.timeout = most, .cpu_time = most}, "AddLocal", 1, 2), 3);
    EXPECT_EQ(sb.call_for<std::int32_t>(hl::call_limits{.cpu_time = most - 1h}, "AddLocal", 1, 2), 3);
    EXPECT_LT(sb.usage().vm_exits, 20u) << "the guest was not kicked again and again";
    auto call = sb.start_call("LoopFor", value_type::uint64, std::vector<hl::argument>{std::uint64_t{100'000}},
                              hl::call_limits{.cpu_time = most});
    status s = status::sliced;
    for (int i = 0; i < 1000 && s == status::sliced; ++i) s = call.run(1ms);
    EXPECT_EQ(s, status::finished);
}

TEST_F(CallLimits, NegativeLimitsAreRefusedAndChangeNothing) {
    EXPECT_EQ(error_of([] { make(hl::sandbox_config{}.set_call_limits({.timeout = -1ms})); }), errc::invalid_config);
    auto sb = make();
    EXPECT_EQ(error_of([&] { sb.call_for<std::int32_t>(hl::call_limits{.cpu_time = -1ms}, "AddLocal", 1, 2); }),
              errc::usage_error);
    EXPECT_EQ(error_of([&] { sb.set_default_call_limits({.timeout = -5s}); }), errc::usage_error);
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
    EXPECT_EQ(sb.default_call_limits(), hl::call_limits{});
}

TEST_F(CallLimits, TheSandboxCountsCallsExitsAndHostCallsExactly) {
    auto sb = make_with_sleep();
    const auto start = sb.usage();
    EXPECT_EQ(sb.call<std::int64_t>("CallHostManyTimes", 25), 325);
    const auto after = sb.usage();
    EXPECT_EQ(after.calls - start.calls, 1u);
    EXPECT_EQ(after.host_calls - start.host_calls, 25u);
    EXPECT_GE(after.vm_exits - start.vm_exits, 26u) << "each host call is an exit, and so is the end";
    EXPECT_EQ(after.system_calls, 0u) << "a freestanding guest makes none";
    EXPECT_EQ(after.cpu_time, 0ns) << "not measured: no budget, and the configuration does not ask";
    // A failed call counts as well; a refused one (poisoned) does not start.
    EXPECT_EQ(error_of([&] { sb.call<void>("WriteNull"); }), errc::guest_fault);
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("AddLocal", 1, 1); }), errc::poisoned);
    EXPECT_EQ(sb.usage().calls - start.calls, 2u);
}

TEST_F(CallLimits, TheConfigurationCanAskForTheCpuTimeOfEveryCall) {
    auto sb = make(hl::sandbox_config{}.set_measure_cpu_time(true));
    const auto before = sb.usage().cpu_time;
    EXPECT_EQ(sb.call<std::uint64_t>("LoopFor", std::uint64_t{2'000'000}), 2'000'000u);
    EXPECT_GT(sb.usage().cpu_time, before);
}

TEST_F(CallLimits, ASlicedCallIsChargedOnlyWhileItRuns) {
    auto sb = make();
    auto call = sb.start_call("Spin", value_type::void_type, {}, hl::call_limits{.cpu_time = 20ms});
    const auto started = std::chrono::steady_clock::now();
    int slices = 0;
    status s = status::sliced;
    while (s == status::sliced && slices < 10'000) {
        s = call.run_nothrow(1ms);
        ++slices;
        std::this_thread::sleep_for(5ms);  // between slices: waiting, not charged
    }
    ASSERT_EQ(s, status::failed);
    EXPECT_EQ(call.failure().code(), errc::cpu_budget_exceeded);
    EXPECT_GE(call.usage().cpu_time, 20ms);
    // Slices of at least 1 ms of wall time each: with waits charged, it would have ended after
    // about 20 ms; the 5 ms waits alone add up to more than twice that.
    EXPECT_GE(slices, 5);
    EXPECT_GT(std::chrono::steady_clock::now() - started, 40ms);
}

}  // namespace
