// SPDX-License-Identifier: Apache-2.0
// Threads dedicated to calls (guest_call::dedicate_this_thread), whose slice timer stays armed
// between calls: a call with a slice or a deadline is always stopped at its time and never before,
// whatever the thread ran before (nested calls, other sandboxes, other interrupt signals, a blocked
// signal, dedication turned off and on), and kills still end it.
#include <gtest/gtest.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"
#include "watchdog.hpp"

namespace {

using hl::errc;
using hl::value_type;
using status = hl::guest_call::status;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;
using hl::test::error_of;

hl::multi_use_sandbox make(int signal_offset = 0) {
    hl::sandbox_config config;
    config.interrupt_signal_offset = signal_offset;
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

// Undoes the test thread's dedication whatever way the test ends.
struct dedication {
    explicit dedication(bool on) { hl::guest_call::dedicate_this_thread(on); }
    ~dedication() { hl::guest_call::dedicate_this_thread(false); }
};

// The watchdog for a thread that blocks the interrupt signal: a kill's signal stays pending there,
// so after the kill it kicks the thread with another interrupt signal of the library's (its
// handler does nothing), which ends KVM_RUN; the call then sees the kill.
class blocked_signal_watchdog {
public:
    blocked_signal_watchdog(hl::interrupt_handle handle, pthread_t thread, int kick_signal, std::chrono::seconds limit)
        : thread_([this, handle, thread, kick_signal, limit] {
              std::unique_lock lock(mutex_);
              if (done_cv_.wait_for(lock, limit, [this] { return done_; })) return;
              fired_ = true;
              while (!done_) {
                  lock.unlock();
                  std::thread killer([&] { handle.kill(); });
                  for (int i = 0; i < 20; ++i) {
                      std::this_thread::sleep_for(10ms);
                      ::pthread_kill(thread, kick_signal);
                  }
                  killer.join();
                  lock.lock();
              }
          }) {}
    ~blocked_signal_watchdog() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        done_cv_.notify_one();
        thread_.join();
    }
    bool fired() {
        std::lock_guard lock(mutex_);
        return fired_;
    }

private:
    std::mutex mutex_;
    std::condition_variable done_cv_;
    bool done_ = false;
    bool fired_ = false;
    std::thread thread_;
};

constexpr int kick_offset = 4;  // an interrupt signal no sandbox of these tests runs on

void block_signal(int signal, int how) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    ASSERT_EQ(::pthread_sigmask(how, &set, nullptr), 0);
}

// Runs a fresh Spin in slices of `slice` `runs` times, each of which must end as sliced and no
// earlier than its slice; then kills it and restores. False once a run ended otherwise.
using snapshot_ptr = std::shared_ptr<const hl::snapshot>;

bool spin_in_slices(hl::multi_use_sandbox& sb, const snapshot_ptr& snap, std::chrono::nanoseconds slice, int runs) {
    auto spin = sb.start_call("Spin", value_type::void_type, std::vector<hl::argument>{});
    bool ok = true;
    for (int i = 0; i < runs && ok; ++i) {
        const auto before = clock_type::now();
        const errc e = error_of([&] { ok = spin.run(slice) == status::sliced; });
        EXPECT_EQ(e, errc{}) << "run " << i;
        ok = ok && e == errc{};
        EXPECT_GE(clock_type::now() - before, slice) << "a slice ended before its time";
    }
    if (ok) {
        sb.interrupt_handle().kill();
        EXPECT_EQ(error_of([&] { spin.run(slice); }), errc::cancelled);
    }
    sb.restore(snap);
    return ok;
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
        blocked_signal_watchdog dog(sb.interrupt_handle(), ::pthread_self(), SIGRTMIN + kick_offset, 5s);
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
        blocked_signal_watchdog dog(inner.interrupt_handle(), ::pthread_self(), SIGRTMIN + kick_offset, 5s);
        EXPECT_TRUE(spin_in_slices(inner, snap, 200us, 3));
        EXPECT_FALSE(dog.fired()) << "a run was left in the guest without a timer that could stop it";
        hl::guest_call::dedicate_this_thread(false);
    }).join();
}

// Inner calls on the same thread, through a host function of an outer sliced call: deadlines
// shorter and longer than the outer slice, an inner sliced call, on the same or another signal.
// The outer call's arming is pending when each inner call starts.
struct nesting {
    bool dedicated;
    int inner_offset;
};
void PrintTo(const nesting& n, std::ostream* out) {
    *out << (n.dedicated ? "dedicated" : "ordinary") << " thread, inner signal offset " << n.inner_offset;
}

class NestedOnOneThread : public ::testing::TestWithParam<nesting> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

void expect_times_out_no_earlier(hl::multi_use_sandbox& sb, std::chrono::nanoseconds timeout) {
    const auto before = clock_type::now();
    EXPECT_EQ(error_of([&] { sb.call_for<void>(timeout, "Spin"); }), errc::timed_out) << timeout.count() << " ns";
    EXPECT_GE(clock_type::now() - before, timeout) << "a deadline passed before its time";
}

// A short call with a deadline: it returns its result, or (on a slow machine) times out no earlier
// than its deadline.
void short_call(hl::multi_use_sandbox& sb, const snapshot_ptr& snap, std::chrono::nanoseconds timeout, std::int32_t a) {
    const auto before = clock_type::now();
    std::int32_t sum = 0;
    const errc e = error_of([&] { sum = sb.call_for<std::int32_t>(timeout, "AddLocal", a, 1); });
    if (e == errc{}) {
        EXPECT_EQ(sum, a + 1);
        return;
    }
    EXPECT_EQ(e, errc::timed_out);
    EXPECT_GE(clock_type::now() - before, timeout) << "a deadline passed before its time";
    sb.restore(snap);
}

TEST_P(NestedOnOneThread, InnerDeadlinesAndSlicesAreHonouredAndTheOuterSlicesGoOn) {
    const dedication on(GetParam().dedicated);
    auto inner = make(GetParam().inner_offset);
    const auto inner_snap = inner.snapshot();
    const hl::test::watchdog inner_dog(inner.interrupt_handle(), 20s);
    int host_calls = 0;
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        ++host_calls;
        for (const auto timeout : {std::chrono::nanoseconds(300us), std::chrono::nanoseconds(5ms),
                                   std::chrono::nanoseconds(25ms)}) {
            expect_times_out_no_earlier(inner, timeout);
            inner.restore(inner_snap);
            short_call(inner, inner_snap, timeout, a);
        }
        // Slices shorter and longer than the outer call's.
        for (const auto slice : {std::chrono::nanoseconds(100us), std::chrono::nanoseconds(4ms)}) {
            EXPECT_TRUE(spin_in_slices(inner, inner_snap, slice, 3)) << slice.count() << " ns";
        }
        return a + b;
    });
    auto outer = std::move(u).evolve();
    const auto outer_snap = outer.snapshot();
    const hl::test::watchdog outer_dog(outer.interrupt_handle(), 20s);
    auto call = outer.start_call("CallHostManyTimes", value_type::int64, std::vector<hl::argument>{std::int32_t{3}});
    status s = status::sliced;
    for (int i = 0; i < 10'000 && s == status::sliced; ++i) {
        const auto before = clock_type::now();
        s = call.run(1ms);
        if (s == status::sliced) {
            EXPECT_GE(clock_type::now() - before, 1ms) << "a slice ended before its time";
        }
    }
    ASSERT_EQ(s, status::finished);
    EXPECT_EQ(std::get<std::int64_t>(call.take_result()), 0 + 1 + 2 + 3);
    EXPECT_EQ(host_calls, 3);
    EXPECT_TRUE(spin_in_slices(outer, outer_snap, 1ms, 5)) << "after the nested calls";
}

TEST_P(NestedOnOneThread, AnOuterDeadlineThatPassesDuringALongerInnerCallEndsTheOuterCallAfterIt) {
    const dedication on(GetParam().dedicated);
    auto inner = make(GetParam().inner_offset);
    const auto inner_snap = inner.snapshot();
    const hl::test::watchdog inner_dog(inner.interrupt_handle(), 20s);
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        expect_times_out_no_earlier(inner, 30ms);
        inner.restore(inner_snap);
        return a + b;
    });
    auto outer = std::move(u).evolve();
    const hl::test::watchdog outer_dog(outer.interrupt_handle(), 20s);
    auto call = outer.start_call("CallHostManyTimes", value_type::int64, std::vector<hl::argument>{std::int32_t{1000}}, 10ms);
    const auto deadline = *call.deadline();
    errc end{};
    for (int i = 0; i < 10'000 && end == errc{}; ++i) end = error_of([&] { call.run(2ms); });
    EXPECT_EQ(end, errc::timed_out);
    EXPECT_GE(clock_type::now(), deadline);
    EXPECT_EQ(inner.call_for<std::int32_t>(1s, "AddLocal", 1, 2), 3);
}

// Sandboxes on three interrupt signals, one thread, a fixed pseudo-random mix of short calls with
// deadlines, sliced runaways, runaways with deadlines, sliced computations and idle gaps in which an
// arming left by an earlier call goes off.
class InterleavedOnOneThread : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_P(InterleavedOnOneThread, EveryCallEndsAtItsOwnTimeWhateverRanBefore) {
    const dedication on(GetParam());
    std::vector<hl::multi_use_sandbox> sandboxes;
    std::vector<snapshot_ptr> snaps;
    std::vector<std::unique_ptr<hl::test::watchdog>> dogs;
    for (const int offset : {0, 1, 2, 0}) {
        sandboxes.push_back(make(offset));
        snaps.push_back(sandboxes.back().snapshot());
        dogs.push_back(std::make_unique<hl::test::watchdog>(sandboxes.back().interrupt_handle(), 30s));
    }
    const std::chrono::nanoseconds times[] = {60us, 300us, 1ms, 3ms};
    std::minstd_rand random(20261202);
    for (int op = 0; op < 200; ++op) {
        const std::size_t which = random() % sandboxes.size();
        auto& sb = sandboxes[which];
        const auto time = times[random() % std::size(times)];
        SCOPED_TRACE(testing::Message() << "op " << op << " sandbox " << which << " time " << time.count() << " ns");
        switch (random() % 5) {
        case 0: short_call(sb, snaps[which], time, op); break;
        case 1: EXPECT_TRUE(spin_in_slices(sb, snaps[which], time, 1 + static_cast<int>(random() % 3))); break;
        case 2:
            expect_times_out_no_earlier(sb, time);
            sb.restore(snaps[which]);
            break;
        case 3: {
            auto loop = sb.start_call("LoopFor", value_type::uint64, std::vector<hl::argument>{std::uint64_t{200'000}});
            status s = status::sliced;
            for (int i = 0; i < 100'000 && s == status::sliced; ++i) s = loop.run(time);
            ASSERT_EQ(s, status::finished);
            EXPECT_EQ(std::get<std::uint64_t>(loop.take_result()), 200'000u);
            break;
        }
        case 4: std::this_thread::sleep_for(time); break;
        }
    }
    for (const auto& dog : dogs) EXPECT_FALSE(dog->fired()) << "a call was left in the guest without a timer";
}

// A kill at a random moment of a runaway run in random slices, or with a deadline: it ends the call
// as cancelled; a slice or a deadline that comes first ends it no earlier than its time; nothing
// ends it as cancelled before the kill was made.
TEST_P(InterleavedOnOneThread, AKillRacingTheSliceTimerOrTheDeadlineEndsTheCallRightly) {
    const dedication on(GetParam());
    auto sb = make();
    const auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    hl::test::watchdog dog(handle, 30s);
    std::minstd_rand random(4242);
    int cancelled = 0;
    for (int round = 0; round < 150; ++round) {
        SCOPED_TRACE(testing::Message() << "round " << round);
        const auto delay = std::chrono::microseconds(random() % 600);
        const bool with_deadline = round % 2 == 1;
        const auto timeout = with_deadline ? std::chrono::nanoseconds(std::chrono::microseconds(100 + random() % 500))
                                           : std::chrono::nanoseconds(0);
        auto spin = sb.start_call("Spin", value_type::void_type, std::vector<hl::argument>{}, timeout);
        std::atomic<bool> kill_made{false};
        std::atomic<bool> go{false};
        std::thread killer([&] {
            while (!go.load()) std::this_thread::yield();
            std::this_thread::sleep_for(delay);
            kill_made.store(true);
            handle.kill();
        });
        go.store(true);
        errc end{};
        for (int i = 0; i < 100'000 && end == errc{}; ++i) {
            const auto slice = std::chrono::microseconds(50 + random() % 200);
            const auto before = clock_type::now();
            status s{};
            end = error_of([&] { s = spin.run(slice); });
            if (end == errc{}) {
                EXPECT_EQ(s, status::sliced);
                EXPECT_GE(clock_type::now() - before, slice) << "a slice ended before its time";
            }
        }
        killer.join();
        if (end == errc::cancelled) {
            ++cancelled;
            EXPECT_TRUE(kill_made.load()) << "cancelled with no kill";
        } else {
            EXPECT_TRUE(with_deadline) << "ended by " << static_cast<int>(end) << " with no deadline";
            EXPECT_EQ(end, errc::timed_out);
            EXPECT_GE(clock_type::now(), *spin.deadline()) << "a deadline passed before its time";
        }
        sb.restore(snap);
    }
    EXPECT_GT(cancelled, 0);
    EXPECT_FALSE(dog.fired()) << "a kill was lost";
}

INSTANTIATE_TEST_SUITE_P(Threads, InterleavedOnOneThread, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                             return info.param ? "Dedicated" : "Ordinary";
                         });

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
    const hl::test::watchdog outer_dog(outer.interrupt_handle(), 20s);
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

INSTANTIATE_TEST_SUITE_P(Threads, NestedOnOneThread,
                         ::testing::Values(nesting{false, 0}, nesting{true, 0}, nesting{false, 1}, nesting{true, 1}),
                         [](const ::testing::TestParamInfo<nesting>& info) {
                             return std::string(info.param.dedicated ? "Dedicated" : "Ordinary") +
                                    (info.param.inner_offset == 0 ? "SameSignal" : "OtherSignal");
                         });

TEST_F(DedicatedThread, TurningDedicationOffLeavesNoArmingToInterruptTheThreadsSystemCalls) {
    auto sb = make();
    const hl::test::watchdog dog(sb.interrupt_handle(), 20s);
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

TEST_F(DedicatedThread, AnArmingThatGoesOffWithNoCallOnTheThreadLeavesTheNextCallsTheirTime) {
    const dedication on(true);
    auto sb = make();
    const auto snap = sb.snapshot();
    const hl::test::watchdog dog(sb.interrupt_handle(), 20s);
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
    const hl::test::watchdog inner_dog(inner.interrupt_handle(), 20s);
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
    const hl::test::watchdog outer_dog(outer.interrupt_handle(), 20s);
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

}  // namespace
