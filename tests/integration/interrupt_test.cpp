// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;
using namespace std::chrono_literals;

hl::multi_use_sandbox make(hl::sandbox_config config = {}) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

using hl::test::error_of;

void wait_until_running(const hl::interrupt_handle& h) {
    while (!h.running()) std::this_thread::yield();
}

class Interrupt : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(Interrupt, KillStopsSpinFromAnotherThread) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    std::thread killer([&] {
        wait_until_running(handle);
        std::this_thread::sleep_for(10ms);
        EXPECT_TRUE(handle.kill());
    });
    try {
        sb.call<void>("Spin");
        FAIL() << "Spin returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::cancelled) << e.what();
    }
    killer.join();
    EXPECT_TRUE(sb.poisoned());
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_F(Interrupt, AKillWhileNoCallRunsDoesNothingAndDoesNotAffectLaterCalls) {
    auto sb = make();
    const auto handle = sb.interrupt_handle();
    EXPECT_FALSE(handle.running());
    EXPECT_FALSE(handle.kill());
    EXPECT_EQ(sb.call<std::uint64_t>("LoopFor", std::uint64_t{100'000}), 100'000u);
    EXPECT_FALSE(sb.poisoned());
}

TEST_F(Interrupt, KillsAtRandomMomentsEndEveryCallInSuccessOrCancellation) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    std::mt19937 rng(20261127);
    int succeeded = 0, cancelled = 0;
    for (int i = 0; i < 2000; ++i) {
        const auto delay = std::chrono::microseconds(rng() % 400);
        const std::uint64_t work = rng() % 40'000;
        std::thread killer([&] {
            std::this_thread::sleep_for(delay);
            handle.kill();
        });
        const errc e = error_of([&] { ASSERT_EQ(sb.call<std::uint64_t>("LoopFor", work), work); });
        killer.join();
        if (e == errc{}) {
            ++succeeded;
        } else {
            ASSERT_EQ(e, errc::cancelled) << "iteration " << i;
            ++cancelled;
            sb.restore(snap);
        }
        ASSERT_EQ(sb.call<std::int32_t>("AddLocal", i, 1), i + 1) << "iteration " << i;
    }
    EXPECT_GT(succeeded, 0);
    EXPECT_GT(cancelled, 0);
    RecordProperty("succeeded", succeeded);
    RecordProperty("cancelled", cancelled);
}

TEST_F(Interrupt, AKillDuringAHostFunctionTakesEffectWhenTheGuestResumes) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    std::atomic<bool> in_host{false};
    bool host_finished = false;
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        in_host = true;
        std::this_thread::sleep_for(30ms);
        host_finished = true;
        return a + b;
    });
    auto sb = std::move(u).evolve();
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    std::thread killer([&] {
        while (!in_host) std::this_thread::yield();
        EXPECT_TRUE(handle.kill());
    });
    EXPECT_EQ(error_of([&] { sb.call<std::int64_t>("CallHostManyTimes", 1000); }), errc::cancelled);
    killer.join();
    EXPECT_TRUE(host_finished) << "the host function ran to its end";
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("Add", 2, 3), 5);
}

TEST_F(Interrupt, AHostFunctionCanSeeThatItsCallWasInterrupted) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    std::atomic<bool> in_host{false};
    bool saw_it = false;
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        in_host = true;
        EXPECT_FALSE(hl::current_call_interrupted());
        for (int i = 0; i < 10'000 && !hl::current_call_interrupted(); ++i) std::this_thread::sleep_for(1ms);
        saw_it = hl::current_call_interrupted();
        return a + b;
    });
    auto sb = std::move(u).evolve();
    const auto handle = sb.interrupt_handle();
    std::thread killer([&] {
        while (!in_host) std::this_thread::yield();
        handle.kill();
    });
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("Add", 1, 2); }), errc::cancelled);
    killer.join();
    EXPECT_TRUE(saw_it);
    EXPECT_FALSE(hl::current_call_interrupted()) << "outside a call";
}

TEST_F(Interrupt, ADeadlineStopsSpin) {
    auto sb = make();
    auto snap = sb.snapshot();
    try {
        sb.call_for<void>(20ms, "Spin");
        FAIL() << "Spin returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::timed_out) << e.what();
        EXPECT_NE(std::string(e.what()).find("20.000 ms"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(sb.poisoned());
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_F(Interrupt, AFastCallFinishesWellInsideItsDeadline) {
    auto sb = make();
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(sb.call_for<std::int32_t>(1s, "AddLocal", i, 1), i + 1);
    // A deadline never outlives its call: later calls without one are not interrupted.
    EXPECT_EQ(sb.call<std::uint64_t>("LoopFor", std::uint64_t{2'000'000}), 2'000'000u);
    EXPECT_FALSE(sb.poisoned());
}

TEST_F(Interrupt, DeadlinesWorkWhenTheSandboxMovesBetweenThreads) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (int round = 0; round < 3; ++round) {
        std::thread([&] {
            EXPECT_EQ(sb.call_for<std::int32_t>(1s, "AddLocal", 1, 1), 2);
            EXPECT_EQ(error_of([&] { sb.call_for<void>(5ms, "Spin"); }), errc::timed_out);
            sb.restore(snap);
        }).join();
    }
}

TEST_F(Interrupt, DroppingASandboxWhileAnotherThreadKillsIsSafe) {
    std::optional<hl::multi_use_sandbox> sb(make());
    const auto handle = sb->interrupt_handle();
    std::atomic<bool> stop{false};
    std::thread killer([&] {
        while (!stop) handle.kill();
    });
    for (int i = 0; i < 200; ++i) {
        const errc e = error_of([&] { sb->call<std::uint64_t>("LoopFor", std::uint64_t{1000}); });
        if (e != errc{}) break;
    }
    sb.reset();
    std::this_thread::sleep_for(5ms);
    stop = true;
    killer.join();
    EXPECT_FALSE(handle.kill());
    EXPECT_FALSE(handle.running());
}

TEST_F(Interrupt, WorksWithAnotherSignal) {
    hl::sandbox_config config;
    config.interrupt_signal_offset = 3;
    auto sb = make(config);
    const auto handle = sb.interrupt_handle();
    std::thread killer([&] {
        wait_until_running(handle);
        std::this_thread::sleep_for(5ms);
        handle.kill();
    });
    EXPECT_EQ(error_of([&] { sb.call<void>("Spin"); }), errc::cancelled);
    killer.join();
}

TEST_F(Interrupt, RefusesASignalTheApplicationAlreadyHandles) {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    ASSERT_EQ(::sigaction(SIGRTMIN + 6, &action, nullptr), 0);
    hl::sandbox_config config;
    config.interrupt_signal_offset = 6;
    try {
        (void)hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_config) << e.what();
        EXPECT_NE(std::string(e.what()).find("interrupt_signal_offset"), std::string::npos) << e.what();
    }
    struct sigaction current {};
    ::sigaction(SIGRTMIN + 6, nullptr, &current);
    EXPECT_EQ(current.sa_handler, action.sa_handler) << "the application's handler is left alone";
}

TEST_F(Interrupt, ADeadlineWhoseSignalAHostFunctionSwallowedStillEndsTheCall) {
    // The thread's timer goes off while a host function holds the interrupt signal blocked, and the
    // host function takes the signal with sigtimedwait: the library's handler never sees it. The
    // arming goes off again, so the call ends at its deadline, not after its billion host calls.
    std::atomic<int> host_calls{0};
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        if (host_calls.fetch_add(1) == 0) {
            sigset_t ours;
            sigemptyset(&ours);
            sigaddset(&ours, SIGRTMIN);
            ::pthread_sigmask(SIG_BLOCK, &ours, nullptr);
            std::this_thread::sleep_for(250ms);  // past the deadline
            const timespec now{};
            siginfo_t info{};
            EXPECT_EQ(::sigtimedwait(&ours, &info, &now), SIGRTMIN);
            EXPECT_EQ(info.si_code, SI_TIMER);
            ::pthread_sigmask(SIG_UNBLOCK, &ours, nullptr);
        }
        return a + b;
    });
    auto sb = std::move(u).evolve();
    // Should the call go on regardless, it ends as cancelled, and the test fails rather than hangs.
    std::atomic<bool> over{false};
    std::thread watchdog([&, handle = sb.interrupt_handle()] {
        for (int i = 0; i < 1000 && !over.load(); ++i) std::this_thread::sleep_for(10ms);
        if (!over.load()) handle.kill();
    });
    const errc ended = error_of([&] { sb.call_for<std::int64_t>(100ms, "CallHostManyTimes", 1'000'000'000); });
    over = true;
    watchdog.join();
    EXPECT_EQ(ended, errc::timed_out);
    EXPECT_GE(host_calls.load(), 1);
}

TEST_F(Interrupt, CountsSignalsThatFoundNoGuestRunning) {
    auto sb = make();  // installs the handler
    const std::uint64_t before = hl::stale_interrupt_signals();
    ::pthread_kill(::pthread_self(), SIGRTMIN);
    EXPECT_EQ(hl::stale_interrupt_signals(), before + 1);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 1), 2);
}

}  // namespace
