// SPDX-License-Identifier: Apache-2.0
// Threads dedicated to calls (guest_call::dedicate_this_thread), whose slice timer stays armed
// between calls: dedication turned on and off (also by host functions), a thread that blocks the
// interrupt signal, an arming that goes off with no call, a timer the kernel refuses to re-create.
#include <gtest/gtest.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "one_thread_support.hpp"
#include "call_watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using namespace hl::test::one_thread;

constexpr int kick_offset = 4;  // an interrupt signal no sandbox of these tests runs on

void block_signal(int signal, int how) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    ASSERT_EQ(::pthread_sigmask(how, &set, nullptr), 0);
}


class DedicatedThread : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(DedicatedThread, AThreadThatBlocksTheSignalAgainWhileNotDedicatedIsSlicedWhenDedicatedAgain) {
    (void)make(kick_offset);  // installs the kick signal's handler
    std::thread([] {
        block_signal(SIGRTMIN, SIG_BLOCK);  // a sigwait design
        auto sb = make();
        const auto snap = sb.snapshot();
        hl::test::call_watchdog dog(sb.interrupt_handle(), 5s, ::pthread_self(), SIGRTMIN + kick_offset);
        hl::guest_call::dedicate_this_thread(true);
        EXPECT_TRUE(spin_in_slices(sb, snap, 200us, 3));
        hl::guest_call::dedicate_this_thread(false);
        // An ordinary thread again: its design blocks the signal, as it did before.
        block_signal(SIGRTMIN, SIG_BLOCK);
        EXPECT_TRUE(spin_in_slices(sb, snap, 200us, 3)) << "on the ordinary thread";
        hl::guest_call::dedicate_this_thread(true);
        EXPECT_TRUE(spin_in_slices(sb, snap, 200us, 3)) << "dedicated again";
        EXPECT_FALSE(dog.fired()) << "a run was left in the guest without a timer that could stop it";
        hl::guest_call::dedicate_this_thread(false);
    }).join();
}

TEST_F(DedicatedThread, ANestedCallThatDedicatesTheThreadLeavesItSlicedAfterTheOuterCallEnds) {
    (void)make(kick_offset);
    std::thread([] {
        block_signal(SIGRTMIN, SIG_BLOCK);
        auto inner = make();
        auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
        u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
            // From here on the thread runs calls back to back.
            hl::guest_call::dedicate_this_thread(true);
            return inner.call_for<std::int32_t>(1s, "AddLocal", a, b);
        });
        auto outer = std::move(u).evolve();
        // The outer call starts on an ordinary thread that blocks the signal: it unblocks the
        // signal for itself and blocks it again when it ends.
        EXPECT_EQ(outer.call_for<std::int64_t>(5s, "CallHostManyTimes", 3), 6);
        const auto snap = inner.snapshot();
        hl::test::call_watchdog dog(inner.interrupt_handle(), 5s, ::pthread_self(), SIGRTMIN + kick_offset);
        EXPECT_TRUE(spin_in_slices(inner, snap, 200us, 3));
        EXPECT_FALSE(dog.fired()) << "a run was left in the guest without a timer that could stop it";
        hl::guest_call::dedicate_this_thread(false);
    }).join();
}

TEST_F(DedicatedThread, TurningDedicationOffLeavesNoArmingToInterruptTheThreadsSystemCalls) {
    auto sb = make();
    const hl::test::call_watchdog dog(sb.interrupt_handle(), 20s);
    hl::guest_call::dedicate_this_thread(true);
    // The deadline's arming stays pending when the call ends.
    const auto snap = sb.snapshot();
    short_call(sb, snap, 20ms, 1);
    hl::guest_call::dedicate_this_thread(false);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
    const int r = ::poll(&p, 1, 50);  // past the arming
    const int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(r, 0) << "poll failed: " << std::strerror(e);
}

TEST_F(DedicatedThread, ACallEndedByItsDeadlineLeavesNoRepeatingTimerToInterruptTheThread) {
    // An arming repeats every millisecond after it goes off, until its guest has stopped; on a
    // dedicated thread, which never disarms, the call loop must end the repetition itself.
    const dedication on(true);
    auto sb = make();
    const hl::test::call_watchdog dog(sb.interrupt_handle(), 20s);
    EXPECT_EQ(hl::test::error_of([&] { sb.call_for<void>(20ms, "Spin"); }), hl::errc::timed_out);
    const std::uint64_t stale = hl::stale_interrupt_signals();
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
    const int r = ::poll(&p, 1, 50);  // fifty repetitions' worth
    const int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    EXPECT_EQ(r, 0) << "poll failed: " << std::strerror(e);
    EXPECT_EQ(hl::stale_interrupt_signals(), stale);
}

TEST_F(DedicatedThread, AnArmingThatGoesOffWithNoCallOnTheThreadLeavesTheNextCallsTheirTime) {
    const dedication on(true);
    auto sb = make();
    const auto snap = sb.snapshot();
    const hl::test::call_watchdog dog(sb.interrupt_handle(), 20s);
    for (int round = 0; round < 20; ++round) {
        short_call(sb, snap, std::chrono::microseconds(100 + 50 * round), round);
        std::this_thread::sleep_for(std::chrono::microseconds(100 * round));  // it goes off here, or not yet
        if (round % 2 == 0) {
            EXPECT_TRUE(spin_in_slices(sb, snap, 2ms, 2));
        } else {
            expect_times_out_no_earlier(sb, 3ms);
            sb.restore(snap);
        }
    }
}

TEST_F(DedicatedThread, HostFunctionsThatTurnDedicationOnAndOffLeaveTheOuterCallItsSlices) {
    auto inner = make();
    const hl::test::call_watchdog inner_dog(inner.interrupt_handle(), 20s);
    int host_calls = 0;
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        // Off disarms the timer the outer call may rely on; on keeps an inner call's arming.
        hl::guest_call::dedicate_this_thread(++host_calls % 2 == 1);
        if (host_calls % 3 == 0) return inner.call_for<std::int32_t>(1s, "AddLocal", a, b);
        return a + b;
    });
    auto outer = std::move(u).evolve();
    const auto snap = outer.snapshot();
    const hl::test::call_watchdog outer_dog(outer.interrupt_handle(), 20s);
    for (const bool dedicated : {false, true}) {
        hl::guest_call::dedicate_this_thread(dedicated);
        auto call = outer.start_call("CallHostManyTimes", value_type::int64, std::vector<hl::argument>{std::int32_t{400}});
        status s = status::sliced;
        for (int i = 0; i < 100'000 && s == status::sliced; ++i) s = call.run(100us);
        ASSERT_EQ(s, status::finished);
        EXPECT_EQ(std::get<std::int64_t>(call.take_result()), 400 * 401 / 2);
        // Whatever the host functions left the thread as, runaways are still sliced.
        EXPECT_TRUE(spin_in_slices(outer, snap, 1ms, 5));
    }
    hl::guest_call::dedicate_this_thread(false);
}


TEST_F(DedicatedThread, SandboxesAreCreatedWhileAnEarlierCallsArmingGoesOff) {
    // A runtime worker creates sandboxes between calls. The kernel gives up creating a VM when a
    // signal comes (KVM_CREATE_VM fails with EINTR): the arming a call left must not fail it.
    const dedication on(true);
    auto sb = make();
    const auto snap = sb.snapshot();
    std::minstd_rand random(7);
    int refused = 0;
    std::string what;
    for (int i = 0; i < 300; ++i) {
        short_call(sb, snap, std::chrono::microseconds(20 + random() % 1500), i);
        try {
            auto created = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
        } catch (const std::exception& e) {
            ++refused;
            what = e.what();
        }
    }
    EXPECT_EQ(refused, 0) << "the last: " << what;
}

// No signal may be queued, so no timer created (RLIMIT_SIGPENDING 0), for as long as it lives.
class no_new_timers {
public:
    no_new_timers() {
        ::getrlimit(RLIMIT_SIGPENDING, &old_);
        rlimit none = old_;
        none.rlim_cur = 0;
        ::setrlimit(RLIMIT_SIGPENDING, &none);
    }
    ~no_new_timers() { ::setrlimit(RLIMIT_SIGPENDING, &old_); }

private:
    rlimit old_{};
};

// The thread's timer is re-created for a call on another interrupt signal.
class RefusedTimer : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_P(RefusedTimer, AnOuterCallWhoseTimerCouldNotBeRecreatedForAMomentIsSlicedAgainAfterIt) {
    const dedication on(GetParam());
    auto inner = make(1);
    int host_calls = 0;
    bool inner_failed = false;
    clock_type::time_point refused_at{};
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        if (++host_calls == 1) {
            // The inner call's timer replaces the outer's, and the kernel refuses it; so does it
            // refuse the outer's when the inner call ends. The outer call loses its timer until
            // its guest runs again.
            const no_new_timers refuse;
            try {
                (void)inner.call_for<std::int32_t>(1s, "AddLocal", a, b);
            } catch (const std::exception&) {
                inner_failed = true;
            }
            refused_at = clock_type::now();
        } else if (clock_type::now() - refused_at > 3s) {
            throw std::runtime_error("the outer call was not sliced after the timer came back");
        }
        return a + b;
    });
    auto outer = std::move(u).evolve();
    const hl::test::call_watchdog outer_dog(outer.interrupt_handle(), 20s);
    auto call = outer.start_call("CallHostManyTimes", value_type::int64,
                                 std::vector<hl::argument>{std::int32_t{1'000'000}});
    status s = status::sliced;
    int sliced = 0;
    errc end{};
    for (int i = 0; i < 10 && s == status::sliced && end == errc{}; ++i) {
        end = error_of([&] { s = call.run(2ms); });
        sliced += end == errc{} && s == status::sliced;
    }
    EXPECT_TRUE(inner_failed) << "the kernel created the timer all the same";
    EXPECT_EQ(end, errc{});
    EXPECT_EQ(sliced, 10);
    EXPECT_EQ(inner.call_for<std::int32_t>(1s, "AddLocal", 1, 2), 3) << "the timer is back";
}

INSTANTIATE_TEST_SUITE_P(Threads, RefusedTimer, ::testing::Bool(), [](const ::testing::TestParamInfo<bool>& info) {
    return info.param ? "Dedicated" : "Ordinary";
});

}  // namespace
