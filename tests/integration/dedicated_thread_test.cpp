// SPDX-License-Identifier: Apache-2.0
// Threads dedicated to calls (guest_call::dedicate_this_thread), whose slice timer stays armed
// between calls: a call with a slice or a deadline is always stopped at its time and never before,
// whatever the thread ran before (nested calls, other sandboxes, other interrupt signals, a blocked
// signal, dedication turned off and on), and kills still end it.
#include <gtest/gtest.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
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

}  // namespace
