// SPDX-License-Identifier: Apache-2.0
// guest_call::run_nothrow(): every way a call ends in failure comes back as status::failed with
// the error run() would have thrown; misuse still throws. And the KVM calls around a sandbox's
// life shrug off signals that land in them.
#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;
using hl::value_type;
using status = hl::guest_call::status;
using namespace std::chrono_literals;
using hl::test::error_of;

hl::multi_use_sandbox make() { return hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve(); }

// Runs `call` with run_nothrow() until it ends; returns the last status.
status run_to_end(hl::guest_call& call, std::chrono::nanoseconds slice) {
    for (int i = 0; i < 100'000; ++i) {
        const status s = call.run_nothrow(slice);
        if (s != status::sliced) return s;
    }
    ADD_FAILURE() << "the call did not end";
    return status::sliced;
}

// What run() throws for a call to `name` on a fresh sandbox (the message to compare with).
std::string thrown_by_run(const char* name, value_type type, std::vector<hl::argument> args = {},
                          std::chrono::nanoseconds timeout = {}) {
    auto sb = make();
    auto call = sb.start_call(name, type, args, timeout);
    try {
        while (call.run(1ms) == status::sliced) {
        }
    } catch (const hl::error& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

class NothrowCall : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(NothrowCall, AKillEndsTheCallWithFailedAndTheErrorRunWouldThrow) {
    auto sb = make();
    const auto snap = sb.snapshot();
    auto spin = sb.start_call("Spin", value_type::void_type, {});
    for (int i = 0; i < 3; ++i) ASSERT_EQ(spin.run_nothrow(200us), status::sliced);
    EXPECT_EQ(error_of([&] { (void)spin.failure(); }), errc::usage_error) << "no failure while it runs";
    ASSERT_TRUE(sb.interrupt_handle().kill());
    ASSERT_EQ(spin.run_nothrow(200us), status::failed);
    EXPECT_TRUE(spin.done());
    const auto failure = spin.failure();
    EXPECT_EQ(failure.code(), errc::cancelled);
    EXPECT_EQ(std::string(failure.what()),
              "stopped by a kill (interrupt_handle::kill(), or a cancelled async operation): the guest call was "
              "cancelled by the host");
    EXPECT_TRUE(sb.poisoned());
    EXPECT_EQ(error_of([&] { spin.run_nothrow(200us); }), errc::usage_error) << "a finished call is not run again";
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 2, 3), 5);
}

TEST_F(NothrowCall, ADeadlineEndsTheCallWithFailed) {
    auto sb = make();
    auto spin = sb.start_call("Spin", value_type::void_type, {}, 5ms);
    ASSERT_EQ(run_to_end(spin, 1ms), status::failed);
    EXPECT_EQ(spin.failure().code(), errc::timed_out);
    EXPECT_EQ(std::string(spin.failure().what()), thrown_by_run("Spin", value_type::void_type, {}, 5ms));
}

TEST_F(NothrowCall, FaultsAbortsAndGuestErrorsComeBackAsTheyWouldBeThrown) {
    struct failing {
        const char* name;
        value_type type;
        std::vector<hl::argument> args;
        errc code;
    };
    const std::vector<failing> cases = {
        {"ReadNull", value_type::int32, {}, errc::guest_fault},
        {"DivideByZero", value_type::int32, {std::int32_t{1}, std::int32_t{0}}, errc::guest_fault},
        {"Abort", value_type::void_type, {std::int32_t{7}, std::string_view("bye")}, errc::guest_aborted},
        {"ReturnGuestError", value_type::void_type, {std::int32_t{3}, std::string_view("no")}, errc::guest_error},
        {"NoSuchFunction", value_type::void_type, {}, errc::unknown_function},
    };
    for (const failing& f : cases) {
        SCOPED_TRACE(f.name);
        auto sb = make();
        auto call = sb.start_call(f.name, f.type, f.args);
        ASSERT_EQ(run_to_end(call, 1ms), status::failed);
        const auto failure = call.failure();
        EXPECT_EQ(failure.code(), f.code) << failure.what();
        EXPECT_EQ(std::string(failure.what()), thrown_by_run(f.name, f.type, f.args));
        EXPECT_EQ(sb.poisoned(), hl::is_poisoning(f.code));
    }
}

TEST_F(NothrowCall, ASuccessIsNoFailureAndMisuseStillThrows) {
    auto sb = make();
    auto add = sb.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{1}, std::int32_t{2}});
    ASSERT_EQ(run_to_end(add, 1ms), status::finished);
    EXPECT_EQ(std::get<std::int32_t>(add.take_result()), 3);
    EXPECT_EQ(error_of([&] { (void)add.failure(); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { add.run_nothrow(); }), errc::usage_error);
    hl::guest_call empty;
    EXPECT_EQ(error_of([&] { empty.run_nothrow(); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { (void)empty.failure(); }), errc::usage_error);
    auto other = sb.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{1}, std::int32_t{2}});
    errc from_another_thread{};
    std::thread([&] { from_another_thread = error_of([&] { other.run_nothrow(); }); }).join();
    EXPECT_EQ(from_another_thread, errc::usage_error);
    ASSERT_EQ(run_to_end(other, 1ms), status::finished) << "misuse changed nothing";
}

TEST_F(NothrowCall, SandboxesAreMadeRestoredAndDestroyedUnderAStormOfTheInterruptSignal) {
    // A runtime worker's slice timer may go off after its call, in the next sandbox's creation:
    // KVM_CREATE_VM then fails with EINTR unless it is tried again.
    auto first = make();  // installs the signal's handler
    std::atomic<bool> done{false};
    std::atomic<pthread_t> target{::pthread_self()};
    std::atomic<int> sent{0};
    struct stop_storm {
        std::atomic<bool>& done;
        std::thread& storm;
        ~stop_storm() {
            done = true;
            if (storm.joinable()) storm.join();
        }
    };
    std::thread storm([&] {
        // One signal at a time (the next once the handler has seen the last, or after a while):
        // real-time signals queue, and a flood would use up the user's pending-signal limit.
        while (!done.load()) {
            const auto seen = hl::stale_interrupt_signals();
            ::pthread_kill(target.load(), SIGRTMIN);
            sent.fetch_add(1);
            for (int i = 0; i < 100'000 && hl::stale_interrupt_signals() == seen && !done.load(); ++i) {
                __builtin_ia32_pause();
            }
        }
    });
    const stop_storm stop{done, storm};
    for (int i = 0; i < 60; ++i) {
        const errc failed = error_of([] {
            auto sb = make();
            const auto snap = sb.snapshot();
            EXPECT_EQ(sb.call<std::string>("Echo", "storm"), "storm");
            sb.restore(snap);
        });
        ASSERT_EQ(failed, errc{}) << "round " << i;
    }
    EXPECT_GT(sent.load(), 0);
}

}  // namespace
