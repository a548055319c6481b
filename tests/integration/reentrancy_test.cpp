// SPDX-License-Identifier: Apache-2.0
// Callbacks that try to drive their own sandbox, calls nested through host functions, and the
// other corners where a callback runs in the middle of a guest call.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;
using namespace std::chrono_literals;

using hl::test::error_of;

class Reentrancy : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(Reentrancy, APrintHandlerCannotCallIntoItsOwnSandbox) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    hl::multi_use_sandbox* self = nullptr;
    errc inner = errc{};
    u.set_print_handler([&](std::string_view) { inner = error_of([&] { self->call<std::int32_t>("EchoInt32", 7); }); });
    auto sb = std::move(u).evolve();
    self = &sb;
    EXPECT_EQ(sb.call<std::int32_t>("PrintOutput", std::string("hello\n")), 6);
    EXPECT_EQ(inner, errc::usage_error) << "host misuse, not a guest breaking the protocol";
}

TEST_F(Reentrancy, AHostFunctionCannotSnapshotOrRestoreItsOwnSandbox) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    hl::multi_use_sandbox* self = nullptr;
    std::shared_ptr<const hl::snapshot> snap;
    errc snapshot_inside = errc{}, restore_inside = errc{};
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        snapshot_inside = error_of([&] { self->snapshot(); });
        restore_inside = error_of([&] { self->restore(snap); });
        return a + b;
    });
    auto sb = std::move(u).evolve();
    self = &sb;
    snap = sb.snapshot();
    EXPECT_EQ(sb.call<std::int32_t>("Add", 1, 2), 3);
    EXPECT_EQ(snapshot_inside, errc::usage_error);
    EXPECT_EQ(restore_inside, errc::usage_error);
    EXPECT_FALSE(sb.poisoned());
}

TEST_F(Reentrancy, ASecondThreadIsRefusedWithAUsageErrorWhileACallRuns) {
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    const auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    errc spinner = errc{};
    std::thread driver([&] { spinner = error_of([&] { sb.call<void>("Spin"); }); });
    while (!handle.running()) std::this_thread::yield();

    try {
        sb.call<std::int32_t>("AddLocal", 1, 2);
        ADD_FAILURE() << "a second thread ran a call";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::usage_error);
        EXPECT_NE(std::string(e.what()).find("another thread"), std::string::npos) << e.what();
    }
    std::error_code ec;
    sb.call<std::int32_t>(ec, "AddLocal", 1, 2);
    EXPECT_EQ(ec, errc::usage_error);
    EXPECT_EQ(error_of([&] { sb.snapshot(); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { sb.restore(snap); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { sb.call_with_restore<std::int32_t>(snap, "AddLocal", 1, 2); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t) { return a; }); }),
              errc::usage_error);
    EXPECT_EQ(error_of([&] { sb.set_log_level(hl::log_level::trace); }), errc::usage_error);
    EXPECT_TRUE(handle.running()) << "the refused attempts left the running call alone";

    handle.kill();
    driver.join();
    EXPECT_EQ(spinner, errc::cancelled);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_F(Reentrancy, DestroyingASandboxWhileAnotherThreadRunsACallStopsTheCallAndWaitsForIt) {
    auto sb = std::make_unique<hl::multi_use_sandbox>(
        hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve());
    const auto handle = sb->interrupt_handle();
    errc spinner = errc{};
    std::thread driver([&, raw = sb.get()] { spinner = error_of([&] { raw->call<void>("Spin"); }); });
    while (!handle.running()) std::this_thread::yield();
    sb.reset();
    EXPECT_FALSE(handle.running());
    driver.join();
    EXPECT_EQ(spinner, errc::cancelled);
}

TEST_F(Reentrancy, DestroyingASandboxDuringAHostFunctionOnAnotherThreadLetsItFinishFirst) {
    std::atomic<bool> entered{false}, finished{false};
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        entered = true;
        std::this_thread::sleep_for(20ms);  // gives the destructor time to start; nothing depends on it
        finished = true;
        return a + b;
    });
    auto sb = std::make_unique<hl::multi_use_sandbox>(std::move(u).evolve());
    errc caller = errc{};
    std::thread driver([&, raw = sb.get()] { caller = error_of([&] { raw->call<std::int64_t>("CallHostManyTimes", 1'000'000'000); }); });
    while (!entered) std::this_thread::yield();
    sb.reset();
    EXPECT_TRUE(finished) << "the destructor returned while a host function still ran";
    driver.join();
    EXPECT_EQ(caller, errc::cancelled);
}

TEST_F(Reentrancy, AHostFunctionMayCallAnotherSandboxAndTheOuterDeadlineStillHolds) {
    auto other = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        return other.call_for<std::int32_t>(1s, "AddLocal", a, b);  // a nested call with its own deadline
    });
    auto sb = std::move(u).evolve();
    EXPECT_EQ(sb.call_for<std::int32_t>(1s, "Add", 20, 22), 42);
    // The outer deadline fires while the guest spins after many nested calls.
    EXPECT_EQ(error_of([&] { sb.call_for<std::int64_t>(30ms, "CallHostManyTimes", 1'000'000'000); }), errc::timed_out);
    EXPECT_FALSE(other.poisoned());
    EXPECT_EQ(other.call<std::int32_t>("AddLocal", 1, 1), 2);
}

TEST_F(Reentrancy, AHostFunctionThatReplacesItselfKeepsRunning) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    hl::multi_use_sandbox* self = nullptr;
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        self->register_host_function("HostAdd", [](std::int32_t x, std::int32_t y) { return x * y; });
        return a + b;
    });
    auto sb = std::move(u).evolve();
    self = &sb;
    EXPECT_EQ(sb.call<std::int32_t>("Add", 3, 4), 7);
    EXPECT_EQ(sb.call<std::int32_t>("Add", 3, 4), 12);
}

TEST_F(Reentrancy, DeadlinesAndKillsWorkWhenTheThreadBlocksTheSignal) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGRTMIN);
    ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &old), 0);
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    auto snap = sb.snapshot();
    EXPECT_EQ(error_of([&] { sb.call_for<void>(20ms, "Spin"); }), errc::timed_out);
    sb.restore(snap);
    const auto handle = sb.interrupt_handle();
    std::thread killer([&] {
        while (!handle.running()) std::this_thread::yield();
        std::this_thread::sleep_for(5ms);
        handle.kill();
    });
    EXPECT_EQ(error_of([&] { sb.call<void>("Spin"); }), errc::cancelled);
    killer.join();
    sigset_t now;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &now);
    EXPECT_EQ(sigismember(&now, SIGRTMIN), 1) << "the thread's mask is put back";
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST_F(Reentrancy, TheLogLevelIsTheHostsAndSurvivesRestore) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    int records = 0;
    u.set_log_handler([&](const hl::log_record&) { ++records; });
    auto sb = std::move(u).evolve();
    auto snap = sb.snapshot();
    sb.set_log_level(hl::log_level::trace);
    sb.restore(snap);
    sb.call<void>("LogMessage", 0, std::string("trace after restore"));
    EXPECT_EQ(records, 1);
    auto twin = hl::multi_use_sandbox::from_snapshot(snap);
    twin.set_log_handler([&](const hl::log_record&) { ++records; });
    twin.call<void>("LogMessage", 0, std::string("not at the default level"));
    EXPECT_EQ(records, 1) << "a sandbox from a snapshot starts at the default level, not the snapshot's";
}

TEST_F(Reentrancy, TheHostDropsLogRecordsBelowTheLevelEvenIfTheGuestSendsThem) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::hostileguest());
    int records = 0;
    u.set_log_handler([&](const hl::log_record&) { ++records; });
    auto sb = std::move(u).evolve();
    sb.call<void>("LogBelowLevel");
    EXPECT_EQ(records, 0);
    EXPECT_FALSE(sb.poisoned());
}

}  // namespace
