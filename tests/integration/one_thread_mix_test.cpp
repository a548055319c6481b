// SPDX-License-Identifier: Apache-2.0
// Many calls on one thread, dedicated to calls or not: nested calls through host functions with
// deadlines and slices shorter and longer than the outer call's, sandboxes on three interrupt
// signals interleaved, and kills racing the slice timer and the deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iterator>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "one_thread_support.hpp"
#include "call_watchdog.hpp"

namespace {

using namespace std::chrono_literals;
using namespace hl::test::one_thread;

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


TEST_P(NestedOnOneThread, InnerDeadlinesAndSlicesAreHonouredAndTheOuterSlicesGoOn) {
    const dedication on(GetParam().dedicated);
    auto inner = make(GetParam().inner_offset);
    const auto inner_snap = inner.snapshot();
    const hl::test::call_watchdog inner_dog(inner.interrupt_handle(), 20s);
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
    const hl::test::call_watchdog outer_dog(outer.interrupt_handle(), 20s);
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
    const hl::test::call_watchdog inner_dog(inner.interrupt_handle(), 20s);
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
        expect_times_out_no_earlier(inner, 30ms);
        inner.restore(inner_snap);
        return a + b;
    });
    auto outer = std::move(u).evolve();
    const hl::test::call_watchdog outer_dog(outer.interrupt_handle(), 20s);
    auto call = outer.start_call("CallHostManyTimes", value_type::int64, std::vector<hl::argument>{std::int32_t{1000}}, 10ms);
    const auto deadline = *call.deadline();
    errc end{};
    for (int i = 0; i < 10'000 && end == errc{}; ++i) end = error_of([&] { call.run(2ms); });
    EXPECT_EQ(end, errc::timed_out);
    EXPECT_GE(clock_type::now(), deadline);
    EXPECT_EQ(inner.call_for<std::int32_t>(1s, "AddLocal", 1, 2), 3);
}

INSTANTIATE_TEST_SUITE_P(Threads, NestedOnOneThread,
                         ::testing::Values(nesting{false, 0}, nesting{true, 0}, nesting{false, 1}, nesting{true, 1}),
                         [](const ::testing::TestParamInfo<nesting>& info) {
                             return std::string(info.param.dedicated ? "Dedicated" : "Ordinary") +
                                    (info.param.inner_offset == 0 ? "SameSignal" : "OtherSignal");
                         });


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
    std::vector<std::unique_ptr<hl::test::call_watchdog>> dogs;
    for (const int offset : {0, 1, 2, 0}) {
        sandboxes.push_back(make(offset));
        snaps.push_back(sandboxes.back().snapshot());
        dogs.push_back(std::make_unique<hl::test::call_watchdog>(sandboxes.back().interrupt_handle(), 30s));
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
    hl::test::call_watchdog dog(handle, 30s);
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

}  // namespace
