// SPDX-License-Identifier: Apache-2.0
// hl::guest_call's contract beyond slices: asynchronous host functions, what fails with
// errc::usage_error and changes nothing, the claim a started call holds, and lifetimes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
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

// HostAsync(int32, int32) -> int32, with an asynchronous form that the tests answer by hand.
struct async_host {
    std::atomic<int> invoked{0};
    std::atomic<int> started{0};

    hl::host_function function() {
        hl::host_function f;
        f.parameters = {value_type::int32, value_type::int32};
        f.result = value_type::int32;
        f.invoke = [this](std::span<const hl::argument> args) -> hl::return_value {
            ++invoked;
            return std::get<std::int32_t>(args[0]) + std::get<std::int32_t>(args[1]);
        };
        f.start_async = [this](std::span<const hl::argument>, std::function<void(hl::host_function::outcome)>) {
            ++started;
            return std::function<void()>{};
        };
        return f;
    }
};

hl::multi_use_sandbox make(async_host& host) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    u.register_host_function("HostAsync", host.function());
    return std::move(u).evolve();
}

hl::guest_call call_host(hl::multi_use_sandbox& sb, const char* function, std::chrono::nanoseconds timeout = {}) {
    const hl::argument args[] = {std::string_view("HostAsync"), std::int32_t{40}, std::int32_t{2}};
    return sb.start_call(function, function == std::string_view("HandleHostError") ? value_type::string : value_type::int32,
                         std::span(args, function == std::string_view("HandleHostError") ? 1 : 3), timeout);
}

class GuestCall : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
    async_host host;
};

TEST_F(GuestCall, AnAsyncHostFunctionWaitsForItsAnswer) {
    auto sb = make(host);
    auto call = call_host(sb, "CallHost");
    ASSERT_EQ(call.run(), status::host_call);
    const auto request = call.pending_host_call();
    ASSERT_NE(request.function, nullptr);
    EXPECT_TRUE(static_cast<bool>(request.function->start_async));
    EXPECT_EQ(request.name, "HostAsync");
    ASSERT_EQ(request.arguments.size(), 2u);
    EXPECT_EQ(std::get<std::int32_t>(request.arguments[0]), 40);
    EXPECT_EQ(std::get<std::int32_t>(request.arguments[1]), 2);
    EXPECT_EQ(host.invoked, 0) << "the scheduler runs it, not the sandbox";
    std::thread([&] { call.complete_host_call(std::int32_t{42}); }).join();  // from any thread
    EXPECT_EQ(call.run(), status::finished);
    EXPECT_EQ(std::get<std::int32_t>(call.take_result()), 42);
}

TEST_F(GuestCall, ASynchronousCallUsesInvoke) {
    auto sb = make(host);
    EXPECT_EQ(sb.call<std::int32_t>("CallHost", "HostAsync", 40, 2), 42);
    EXPECT_EQ(host.invoked, 1);
}

TEST_F(GuestCall, AFailedHostCallReachesTheGuestAsAThrowingHostFunctionWould) {
    auto sb = make(host);
    auto call = call_host(sb, "HandleHostError");
    ASSERT_EQ(call.run(), status::host_call);
    call.fail_host_call("the disk is gone");
    ASSERT_EQ(call.run(), status::finished);
    EXPECT_EQ(std::get<std::string>(call.take_result()), "handled: host function 'HostAsync' failed: the disk is gone");

    auto passed_on = call_host(sb, "CallHost");
    ASSERT_EQ(passed_on.run(), status::host_call);
    passed_on.fail_host_call(std::string(1 << 20, 'x'));  // cut to fit the output buffer
    try {
        passed_on.run();
        FAIL() << "the guest passes the error on";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::host_function_error);
        EXPECT_NE(std::string(e.what()).find("host function 'HostAsync' failed: xxx"), std::string::npos);
    }
    EXPECT_FALSE(sb.poisoned());
}

TEST_F(GuestCall, AnAnswerOfTheWrongTypeBecomesAHostFunctionError) {
    auto sb = make(host);
    auto call = call_host(sb, "HandleHostError");
    ASSERT_EQ(call.run(), status::host_call);
    call.complete_host_call(std::string("forty-two"));
    ASSERT_EQ(call.run(), status::finished);
    const auto text = std::get<std::string>(call.take_result());
    EXPECT_NE(text.find("HostAsync"), std::string::npos) << text;
    EXPECT_NE(text.find("string"), std::string::npos) << text;
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_F(GuestCall, AKillWhileAHostCallWaitsCallsTheListenerAndEndsTheCallAfterTheAnswer) {
    auto sb = make(host);
    auto snap = sb.snapshot();
    auto call = call_host(sb, "CallHost");
    std::atomic<int> heard{0};
    call.set_interrupt_listener([&] { ++heard; });
    ASSERT_EQ(call.run(), status::host_call);
    EXPECT_FALSE(call.interrupted());
    std::thread([&] { EXPECT_TRUE(sb.interrupt_handle().kill()); }).join();
    EXPECT_EQ(heard, 1);
    EXPECT_TRUE(call.interrupted());
    EXPECT_EQ(error_of([&] { call.run(); }), errc::usage_error) << "it must be answered first";
    EXPECT_FALSE(call.done());
    call.complete_host_call(std::int32_t{42});
    EXPECT_EQ(error_of([&] { call.run(); }), errc::cancelled);
    EXPECT_TRUE(call.done());
    EXPECT_TRUE(call.interrupted());
    EXPECT_TRUE(sb.poisoned());
    EXPECT_FALSE(sb.interrupt_handle().kill());
    EXPECT_EQ(heard, 1) << "the listener went with its call";
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_F(GuestCall, AKillBetweenSlicesCallsTheListener) {
    auto sb = make(host);
    auto spin = sb.start_call("Spin", value_type::void_type, {});
    std::atomic<int> heard{0};
    spin.set_interrupt_listener([&] { ++heard; });
    ASSERT_EQ(spin.run(100us), status::sliced);
    EXPECT_TRUE(sb.interrupt_handle().kill());
    EXPECT_EQ(heard, 1);
    EXPECT_EQ(error_of([&] { spin.run(100us); }), errc::cancelled);
}

TEST_F(GuestCall, ADeadlineWhileAHostCallWaitsEndsTheCallAfterTheAnswer) {
    auto sb = make(host);
    auto call = call_host(sb, "CallHost", 20ms);
    ASSERT_EQ(call.run(), status::host_call);
    for (int i = 0; i < 5000 && !call.interrupted(); ++i) std::this_thread::sleep_for(1ms);
    EXPECT_TRUE(call.interrupted());
    call.complete_host_call(std::int32_t{42});
    EXPECT_EQ(error_of([&] { call.run(); }), errc::timed_out);
}

TEST_F(GuestCall, MisuseFailsWithUsageErrorAndChangesNothing) {
    auto sb = make(host);
    hl::guest_call empty;
    EXPECT_TRUE(empty.done());
    EXPECT_FALSE(empty);
    EXPECT_EQ(error_of([&] { empty.run(); }), errc::usage_error);

    auto call = call_host(sb, "CallHost");
    EXPECT_EQ(error_of([&] { call.take_result(); }), errc::usage_error) << "not finished";
    EXPECT_EQ(error_of([&] { call.pending_host_call(); }), errc::usage_error) << "no host call yet";
    EXPECT_EQ(error_of([&] { call.complete_host_call(std::int32_t{1}); }), errc::usage_error);
    errc other_thread{};
    std::thread([&] { other_thread = error_of([&] { call.run(); }); }).join();
    EXPECT_EQ(other_thread, errc::usage_error);

    ASSERT_EQ(call.run(), status::host_call);
    EXPECT_EQ(error_of([&] { call.run(); }), errc::usage_error) << "unanswered";
    EXPECT_EQ(call.pending_host_call().name, "HostAsync") << "still waiting";
    call.complete_host_call(std::int32_t{42});
    EXPECT_EQ(error_of([&] { call.complete_host_call(std::int32_t{0}); }), errc::usage_error) << "answered twice";
    EXPECT_EQ(error_of([&] { call.fail_host_call("late"); }), errc::usage_error);
    ASSERT_EQ(call.run(), status::finished);
    EXPECT_EQ(error_of([&] { call.run(); }), errc::usage_error) << "finished";
    EXPECT_EQ(std::get<std::int32_t>(call.take_result()), 42) << "the first answer counts";
    EXPECT_EQ(error_of([&] { call.take_result(); }), errc::usage_error) << "taken";
    EXPECT_EQ(error_of([&] { call.run(); }), errc::usage_error);
    EXPECT_FALSE(sb.poisoned());
}

TEST_F(GuestCall, KillCurrentOrNextCancelsACallStartedAfterIt) {
    auto sb = make(host);
    auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    handle.kill_current_or_next();
    auto call = sb.start_call("Spin", value_type::void_type, {});
    EXPECT_TRUE(call.interrupted());
    EXPECT_EQ(error_of([&] { call.run(100us); }), errc::cancelled);
    handle.kill_current_or_next();
    handle.disarm();  // withdrawn: the next call is not hit
    sb.restore(snap);
    auto next = sb.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{1}, std::int32_t{2}});
    EXPECT_FALSE(next.interrupted());
    ASSERT_EQ(next.run(), status::finished);
    EXPECT_EQ(std::get<std::int32_t>(next.take_result()), 3);
}

TEST_F(GuestCall, ASliceEndIsNotAnInterruptForAHostFunction) {
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    bool interrupted = false;
    hl::guest_call* self = nullptr;
    errc own_run{};
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        for (int i = 0; i < 5; ++i) {
            std::this_thread::sleep_for(1ms);  // several slice ends pass
            interrupted = interrupted || hl::current_call_interrupted();
        }
        own_run = error_of([&] { self->run(); });
        return a + b;
    });
    auto sb = std::move(u).evolve();
    auto call = sb.start_call("CallHostManyTimes", value_type::int64, std::vector<hl::argument>{std::int32_t{3}});
    self = &call;
    for (int i = 0; i < 100'000 && call.run(100us) != status::finished; ++i) {
    }
    EXPECT_FALSE(interrupted);
    EXPECT_EQ(own_run, errc::usage_error) << "a call cannot run itself from its own host function";
    EXPECT_EQ(std::get<std::int64_t>(call.take_result()), 6);
}

TEST_F(GuestCall, AStartedCallHoldsTheSandboxUntilItEnds) {
    auto sb = make(host);
    auto snap = sb.snapshot();
    auto call = call_host(sb, "CallHost");
    const auto held = [&](auto&& f) { return error_of(f) == errc::usage_error; };
    EXPECT_TRUE(held([&] { sb.call<std::int32_t>("AddLocal", 1, 2); }));
    EXPECT_TRUE(held([&] { sb.snapshot(); }));
    EXPECT_TRUE(held([&] { sb.restore(snap); }));
    EXPECT_TRUE(held([&] { sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t) { return a; }); }));
    EXPECT_TRUE(held([&] { sb.set_log_level(hl::log_level::error); }));
    EXPECT_TRUE(held([&] { sb.start_call("AddLocal", value_type::int32, {}); }));
    std::error_code ec;
    EXPECT_EQ(sb.call<std::int32_t>(ec, "AddLocal", 1, 2), 0);
    EXPECT_EQ(ec, hl::make_error_code(errc::usage_error));
    ASSERT_EQ(call.run(), status::host_call);
    EXPECT_TRUE(held([&] { sb.call<std::int32_t>("AddLocal", 1, 2); })) << "also while a host call waits";
    call.complete_host_call(std::int32_t{42});
    ASSERT_EQ(call.run(), status::finished);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3) << "free once finished, result untaken";
    auto next = sb.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{2}, std::int32_t{2}});
    ASSERT_EQ(next.run(), status::finished);
    EXPECT_EQ(std::get<std::int32_t>(next.take_result()), 4);
    EXPECT_EQ(std::get<std::int32_t>(call.take_result()), 42) << "each call keeps its own result";
}

TEST_F(GuestCall, StartCallRefusesWhatCallRefusesBeforeTheGuestRuns) {
    auto sb = make(host);
    auto snap = sb.snapshot();
    const std::string big(1 << 20, 'x');
    const hl::argument too_large[] = {std::string_view(big)};
    EXPECT_EQ(error_of([&] { sb.start_call("Echo", value_type::string, too_large); }), errc::argument_too_large);
    EXPECT_EQ(error_of([&] { sb.call<void>("Abort", 1, "stop"); }), errc::guest_aborted);
    EXPECT_EQ(error_of([&] { sb.start_call("AddLocal", value_type::int32, {}); }), errc::poisoned);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST_F(GuestCall, AbandoningACallPoisonsTheSandboxUntilRestored) {
    auto sb = make(host);
    auto snap = sb.snapshot();
    {
        auto spin = sb.start_call("Spin", value_type::void_type, {});
        ASSERT_EQ(spin.run(100us), status::sliced);
    }
    EXPECT_FALSE(sb.interrupt_handle().running());
    EXPECT_TRUE(sb.poisoned());
    try {
        sb.call<std::int32_t>("AddLocal", 1, 2);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::poisoned);
        EXPECT_NE(std::string(e.what()).find("abandoned"), std::string::npos) << e.what();
    }
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);

    std::optional<hl::guest_call> waiting(call_host(sb, "CallHost"));
    ASSERT_EQ(waiting->run(), status::host_call);
    waiting.reset();  // abandoned while its host call waits
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("AddLocal", 1, 2); }), errc::poisoned);
    sb.restore(snap);
    { auto never_run = sb.start_call("Spin", value_type::void_type, {}); }
    EXPECT_TRUE(sb.poisoned());
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("CallHost", "HostAsync", 1, 2), 3);
}

TEST_F(GuestCall, AMovedCallGoesOn) {
    auto sb = make(host);
    auto first = sb.start_call("LoopFor", value_type::uint64, std::vector<hl::argument>{std::uint64_t{2'000'000}});
    ASSERT_EQ(first.run(10us), status::sliced);
    hl::guest_call moved(std::move(first));
    EXPECT_FALSE(first);
    EXPECT_TRUE(first.done());
    hl::guest_call assigned;
    assigned = std::move(moved);
    for (int i = 0; i < 1'000'000 && assigned.run(10us) != status::finished; ++i) {
    }
    EXPECT_EQ(std::get<std::uint64_t>(assigned.take_result()), 2'000'000u);
    EXPECT_FALSE(sb.poisoned());
}

TEST_F(GuestCall, ASandboxMovedOrDestroyedUnderALiveCallDoesNotCrash) {
    std::optional<hl::multi_use_sandbox> sb(make(host));
    auto spin = sb->start_call("Spin", value_type::void_type, {});
    ASSERT_EQ(spin.run(100us), status::sliced);
    hl::multi_use_sandbox moved(std::move(*sb));
    ASSERT_EQ(spin.run(100us), status::sliced) << "the call follows its sandbox";
    EXPECT_EQ(error_of([&] { moved.call<std::int32_t>("AddLocal", 1, 2); }), errc::usage_error);
    auto finished = [&] {
        auto sb2 = make(host);
        auto c = sb2.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{1}, std::int32_t{1}});
        EXPECT_EQ(c.run(), status::finished);
        return c;  // outlives its sandbox
    }();
    EXPECT_EQ(std::get<std::int32_t>(finished.take_result()), 2);
    { hl::multi_use_sandbox gone(std::move(moved)); }
    EXPECT_FALSE(spin.done());
    EXPECT_TRUE(spin.interrupted()) << "killed with its sandbox";
    EXPECT_EQ(error_of([&] { spin.run(100us); }), errc::usage_error);
    EXPECT_TRUE(spin.done());
}

TEST_F(GuestCall, ASandboxDestroyedOnAnotherThreadStopsTheCallRunningOnThisOne) {
    std::optional<hl::multi_use_sandbox> sb(make(host));
    const auto handle = sb->interrupt_handle();
    auto spin = sb->start_call("Spin", value_type::void_type, {});
    std::atomic<bool> in_run{false};
    std::thread destroyer([&] {
        while (!in_run) std::this_thread::yield();
        std::this_thread::sleep_for(5ms);
        sb.reset();
    });
    in_run = true;
    EXPECT_EQ(error_of([&] { spin.run(60s); }), errc::usage_error);
    destroyer.join();
    EXPECT_FALSE(handle.running());
}

}  // namespace
