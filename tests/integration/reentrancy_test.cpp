// SPDX-License-Identifier: Apache-2.0
// Callbacks that try to drive their own sandbox, calls nested through host functions, and the
// other corners where a callback runs in the middle of a guest call.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
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
    EXPECT_EQ(inner, errc::protocol_error);
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
