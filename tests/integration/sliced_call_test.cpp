// SPDX-License-Identifier: Apache-2.0
// hl::guest_call run in time slices: results, kills and deadlines at and between slice boundaries,
// sandboxes interleaved on one thread, nested calls, and one POSIX timer per thread.
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "guest_paths.hpp"
#include "call_watchdog.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;
using hl::value_type;
using status = hl::guest_call::status;
using namespace std::chrono_literals;
using hl::test::error_of;

hl::multi_use_sandbox make() {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

hl::guest_call start(hl::multi_use_sandbox& sb, const char* name, value_type type, std::vector<hl::argument> args = {},
                     std::chrono::nanoseconds timeout = {}) {
    return sb.start_call(name, type, args, timeout);
}

// Runs `call` in slices of `slice` until it finishes (at most `max_runs` runs); returns how many
// runs returned status::sliced.
int run_to_end(hl::guest_call& call, std::chrono::nanoseconds slice, int max_runs = 1'000'000) {
    int sliced = 0;
    for (int i = 0; i < max_runs; ++i) {
        const status s = call.run(slice);
        if (s == status::finished) return sliced;
        EXPECT_EQ(s, status::sliced);
        ++sliced;
    }
    ADD_FAILURE() << "the call did not finish in " << max_runs << " runs";
    return sliced;
}

int posix_timers() {
    std::ifstream in("/proc/self/timers");
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.rfind("ID:", 0) == 0;
    return n;
}

// Every test runs on an ordinary thread and on one dedicated to calls (guest_call::
// dedicate_this_thread, as the runtime's workers are), whose timer stays armed between calls.
class SlicedCall : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        HL_REQUIRE_KVM();
        hl::guest_call::dedicate_this_thread(GetParam());
    }
    void TearDown() override { hl::guest_call::dedicate_this_thread(false); }
    static void on_this_kind_of_thread() { hl::guest_call::dedicate_this_thread(GetParam()); }
};

TEST_P(SlicedCall, ReturnsWhatCallReturns) {
    auto sb = make();
    auto add = start(sb, "AddLocal", value_type::int32, {std::int32_t{20}, std::int32_t{22}});
    EXPECT_FALSE(add.done());
    EXPECT_EQ(add.run(), status::finished);
    EXPECT_TRUE(add.done());
    EXPECT_EQ(std::get<std::int32_t>(add.take_result()), sb.call<std::int32_t>("AddLocal", 20, 22));

    auto echo = start(sb, "Echo", value_type::string, {std::string_view("sliced")});
    run_to_end(echo, 50us);
    EXPECT_EQ(std::get<std::string>(echo.take_result()), sb.call<std::string>("Echo", "sliced"));

    const std::uint8_t bytes[] = {1, 2, 3, 250};
    auto bytes_call = start(sb, "EchoBytes", value_type::bytes, {std::span<const std::uint8_t>(bytes)});
    run_to_end(bytes_call, 1ms);
    EXPECT_EQ(std::get<std::vector<std::uint8_t>>(bytes_call.take_result()), std::vector<std::uint8_t>(bytes, bytes + 4));

    auto host = start(sb, "CallHostManyTimes", value_type::int64, {std::int32_t{100}});
    run_to_end(host, 20us);
    EXPECT_EQ(std::get<std::int64_t>(host.take_result()), sb.call<std::int64_t>("CallHostManyTimes", 100));
}

TEST_P(SlicedCall, AGuestErrorEndsTheCallAsCallDoes) {
    auto sb = make();
    auto call = start(sb, "ReturnGuestError", value_type::void_type, {std::int32_t{7}, std::string_view("no")});
    EXPECT_EQ(error_of([&] { call.run(); }), errc::guest_error);
    EXPECT_TRUE(call.done());
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(error_of([&] { call.run(); }), errc::usage_error);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_P(SlicedCall, ARunawayGuestSlicedHundredsOfTimesIsKilledBetweenSlices) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    auto spin = start(sb, "Spin", value_type::void_type);
    EXPECT_TRUE(handle.running()) << "running from start_call on";
    for (int i = 0; i < 300; ++i) {
        ASSERT_EQ(spin.run(100us), status::sliced);
        ASSERT_TRUE(handle.running()) << "and between slices";
        ASSERT_FALSE(spin.interrupted());
    }
    EXPECT_TRUE(handle.kill());
    EXPECT_TRUE(spin.interrupted());
    EXPECT_FALSE(spin.done());
    EXPECT_EQ(error_of([&] { spin.run(100us); }), errc::cancelled);
    EXPECT_TRUE(spin.done());
    EXPECT_FALSE(handle.running());
    EXPECT_FALSE(handle.kill()) << "nothing runs any more";
    EXPECT_TRUE(sb.poisoned());
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_P(SlicedCall, ARunawayGuestIsKilledInsideASlice) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    auto spin = start(sb, "Spin", value_type::void_type);
    for (int i = 0; i < 50; ++i) ASSERT_EQ(spin.run(100us), status::sliced);
    std::atomic<bool> in_run{false};
    std::thread killer([&] {
        while (!in_run) std::this_thread::yield();
        std::this_thread::sleep_for(5ms);
        EXPECT_TRUE(handle.kill());
    });
    in_run = true;
    EXPECT_EQ(error_of([&] { spin.run(60s); }), errc::cancelled);
    killer.join();
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 2, 2), 4);
}

TEST_P(SlicedCall, ADeadlineShorterThanTheSliceEndsTheFirstRun) {
    auto sb = make();
    auto spin = start(sb, "Spin", value_type::void_type, {}, 5ms);
    ASSERT_TRUE(spin.deadline().has_value());
    try {
        spin.run(60s);
        FAIL() << "Spin returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::timed_out) << e.what();
        EXPECT_NE(std::string(e.what()).find("5.000 ms"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(spin.interrupted());
    EXPECT_GE(std::chrono::steady_clock::now(), *spin.deadline());
    EXPECT_TRUE(sb.poisoned());
}

TEST_P(SlicedCall, ADeadlineEqualToTheSliceTimesOut) {
    auto sb = make();
    // The slice is counted from run(), the deadline from start_call(): the deadline comes first.
    auto spin = start(sb, "Spin", value_type::void_type, {}, 20ms);
    EXPECT_EQ(error_of([&] { spin.run(20ms); }), errc::timed_out);
}

TEST_P(SlicedCall, ADeadlineLongerThanTheSliceLetsSlicesEndUntilItPasses) {
    auto sb = make();
    auto spin = start(sb, "Spin", value_type::void_type, {}, 200ms);
    int sliced = 0;
    errc end{};
    for (int i = 0; i < 1'000'000 && end == errc{}; ++i) {
        end = error_of([&] {
            if (spin.run(1ms) == status::sliced) ++sliced;
        });
    }
    EXPECT_EQ(end, errc::timed_out);
    EXPECT_GT(sliced, 0);
}

TEST_P(SlicedCall, ADeadlineThatPassesBetweenSlicesEndsTheNextRun) {
    auto sb = make();
    auto spin = start(sb, "Spin", value_type::void_type, {}, 10ms);
    ASSERT_EQ(spin.run(100us), status::sliced);
    std::this_thread::sleep_until(*spin.deadline() + 1ms);
    EXPECT_TRUE(spin.interrupted());
    EXPECT_EQ(error_of([&] { spin.run(100us); }), errc::timed_out);
}

TEST_P(SlicedCall, AComputationSlicedIntoManyPiecesReturnsTheUnslicedValue) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto whole = sb.call<std::int64_t>("HeapChurn", 100'000);
    for (const auto slice : {std::chrono::nanoseconds(20us), std::chrono::nanoseconds(100us), std::chrono::nanoseconds(1ms)}) {
        sb.restore(snap);
        auto churn = start(sb, "HeapChurn", value_type::int64, {std::int32_t{100'000}});
        const int sliced = run_to_end(churn, slice);
        EXPECT_GT(sliced, 1) << "slice " << slice.count() << " ns";
        EXPECT_EQ(std::get<std::int64_t>(churn.take_result()), whole);
    }
    auto loop = start(sb, "LoopFor", value_type::uint64, {std::uint64_t{20'000'000}});
    EXPECT_GT(run_to_end(loop, 50us), 1);
    EXPECT_EQ(std::get<std::uint64_t>(loop.take_result()), 20'000'000u);
}

TEST_P(SlicedCall, TwoSandboxesInterleaveOnOneThread) {
    auto a = make();
    auto b = make();
    auto long_call = start(a, "LoopFor", value_type::uint64, {std::uint64_t{10'000'000}});
    int rounds = 0;
    for (; rounds < 1'000'000; ++rounds) {
        if (long_call.run(100us) == status::finished) break;
        ASSERT_EQ(b.call<std::int32_t>("AddLocal", rounds, 1), rounds + 1);
        ASSERT_EQ(b.call_for<std::int32_t>(1s, "AddLocal", rounds, 2), rounds + 2);
        if (rounds == 3) {
            auto other = start(b, "LoopFor", value_type::uint64, {std::uint64_t{100'000}});
            run_to_end(other, 10us);
            EXPECT_EQ(std::get<std::uint64_t>(other.take_result()), 100'000u);
        }
    }
    EXPECT_GT(rounds, 3);
    EXPECT_EQ(std::get<std::uint64_t>(long_call.take_result()), 10'000'000u);
}

TEST_P(SlicedCall, ANestedCallThroughAHostFunctionGivesTheOuterCallItsTimerBack) {
    auto inner = make();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    bool inner_timed_out = false;
    bool saw_outer_deadline = false;
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        inner_timed_out = error_of([&] { inner.call_for<void>(5ms, "Spin"); }) == errc::timed_out;
        // The outer call's deadline passes while other calls run on this thread; it is seen once
        // they have returned.
        for (int i = 0; i < 10'000 && !hl::current_call_interrupted(); ++i) {
            (void)error_of([&] { inner.call<std::uint64_t>("LoopFor", std::uint64_t{1000}); });
            std::this_thread::sleep_for(1ms);
        }
        saw_outer_deadline = hl::current_call_interrupted();
        return a + b;
    });
    auto outer = std::move(u).evolve();
    auto call = start(outer, "CallHostManyTimes", value_type::int64, {std::int32_t{1000}}, 50ms);
    errc end{};
    for (int i = 0; i < 1'000'000 && end == errc{}; ++i) end = error_of([&] { call.run(100us); });
    EXPECT_EQ(end, errc::timed_out);
    EXPECT_TRUE(inner_timed_out);
    EXPECT_TRUE(saw_outer_deadline);
}

TEST_P(SlicedCall, SlicesGoOnAfterANestedCallReturns) {
    auto inner = make();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        return inner.call_for<std::int32_t>(1s, "AddLocal", a, b);
    });
    auto outer = std::move(u).evolve();
    auto call = start(outer, "CallHostManyTimes", value_type::int64, {std::int32_t{300}});
    run_to_end(call, 30us);
    EXPECT_EQ(std::get<std::int64_t>(call.take_result()), 300 * 301 / 2);
    auto spin = start(outer, "Spin", value_type::void_type);
    for (int i = 0; i < 20; ++i) ASSERT_EQ(spin.run(100us), status::sliced);
}

TEST_P(SlicedCall, ThreadsHaveOneTimerHoweverManySandboxesTheyDrive) {
    std::vector<hl::multi_use_sandbox> sandboxes;
    auto first = make();
    auto snap = first.snapshot();
    for (int i = 0; i < 200; ++i) sandboxes.push_back(hl::multi_use_sandbox::from_snapshot(snap));
    for (auto& sb : sandboxes) sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    ASSERT_EQ(first.call_for<std::int32_t>(1s, "AddLocal", 1, 1), 2);  // this thread has its timer now
    const int before = posix_timers();
    for (auto& sb : sandboxes) ASSERT_EQ(sb.call_for<std::int32_t>(1s, "AddLocal", 1, 2), 3);
    std::vector<hl::guest_call> calls;
    for (std::size_t i = 0; i < 50; ++i) calls.push_back(start(sandboxes[i], "LoopFor", value_type::uint64, {std::uint64_t{1000}}, 1s));
    for (auto& c : calls) run_to_end(c, 20us);
    EXPECT_EQ(posix_timers(), before);
    int other_thread = 0;
    std::thread([&] {
        on_this_kind_of_thread();
        EXPECT_EQ(sandboxes[0].call_for<std::int32_t>(1s, "AddLocal", 1, 1), 2);
        other_thread = posix_timers();
    }).join();
    EXPECT_EQ(other_thread, before + 1) << "a thread of its own has a timer of its own";
    EXPECT_EQ(posix_timers(), before) << "deleted when its thread ends";
}

TEST_P(SlicedCall, ARunawayAfterShortCallsIsStillSlicedAndNoSliceEndsEarly) {
    // On a dedicated thread the short calls leave their slice timer armed for a moment that comes
    // before the runaway's slice end: the runaway must re-arm for itself when it goes off.
    auto sb = make();
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    const hl::test::call_watchdog dog(handle, 30s);
    for (int round = 0; round < 60; ++round) {
        for (int k = 0; k < round % 5; ++k) {
            auto echo = start(sb, "Echo", value_type::string, {std::string_view("short")});
            run_to_end(echo, 1ms);
        }
        if (round % 3 == 1) std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 7)));
        auto spin = start(sb, "Spin", value_type::void_type);
        for (int j = 0; j < 2; ++j) {
            const auto before = std::chrono::steady_clock::now();
            ASSERT_EQ(spin.run(1ms), status::sliced) << "round " << round;
            EXPECT_GE(std::chrono::steady_clock::now() - before, 1ms) << "a slice ended before its time";
        }
        handle.kill();
        EXPECT_EQ(error_of([&] { spin.run(1ms); }), errc::cancelled);
        sb.restore(snap);
    }
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 2, 3), 5);
}

TEST_P(SlicedCall, ATimerThatGoesOffBetweenCallsLeavesTheNextCallItsSlices) {
    auto sb = make();
    auto snap = sb.snapshot();
    const hl::test::call_watchdog dog(sb.interrupt_handle(), 30s);
    auto echo = start(sb, "Echo", value_type::string, {std::string_view("short")});
    run_to_end(echo, 200us);
    std::this_thread::sleep_for(2ms);  // a dedicated thread's timer goes off here, with no call
    auto spin = start(sb, "Spin", value_type::void_type, {}, 20ms);
    int sliced = 0;
    errc end{};
    for (int i = 0; i < 10'000 && end == errc{}; ++i) {
        end = error_of([&] {
            if (spin.run(500us) == status::sliced) ++sliced;
        });
    }
    EXPECT_EQ(end, errc::timed_out);
    EXPECT_GE(sliced, 1);
    sb.restore(snap);
}

TEST_P(SlicedCall, AThreadThatBlocksTheSignalIsStillSlicedAndKilled) {
    std::thread([] {
        sigset_t block;
        sigemptyset(&block);
        sigaddset(&block, SIGRTMIN);
        ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, nullptr), 0);
        on_this_kind_of_thread();
        auto sb = make();
        const auto snap = sb.snapshot();
        const auto handle = sb.interrupt_handle();
        hl::test::call_watchdog dog(handle, 30s);
        for (int round = 0; round < 3; ++round) {
            auto spin = start(sb, "Spin", value_type::void_type);
            for (int i = 0; i < 5; ++i) ASSERT_EQ(spin.run(200us), status::sliced);
            handle.kill();
            EXPECT_EQ(error_of([&] { spin.run(200us); }), errc::cancelled);
            sb.restore(snap);
        }
        sigset_t now;
        ::pthread_sigmask(SIG_BLOCK, nullptr, &now);
        if (GetParam()) {
            EXPECT_EQ(sigismember(&now, SIGRTMIN), 0) << "a dedicated thread keeps the signal unblocked";
        } else {
            EXPECT_EQ(sigismember(&now, SIGRTMIN), 1) << "the thread's mask is put back";
        }
    }).join();
}

INSTANTIATE_TEST_SUITE_P(Threads, SlicedCall, ::testing::Bool(), [](const ::testing::TestParamInfo<bool>& info) {
    return info.param ? "DedicatedThread" : "OrdinaryThread";
});

}  // namespace
