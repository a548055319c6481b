// SPDX-License-Identifier: Apache-2.0
// Careless and hostile use of the workers: operations made from inside host functions, sandboxes
// destroyed from inside their own calls, leases released mid-call, self-waits.
#include <asio/bind_executor.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <optional>
#include <thread>

#include "hl/runtime/async_host_function.hpp"
#include "worker_support.hpp"

namespace {

using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;
using hl::test::make_sandbox;
using hl::test::run_on;
using hl::test::until_on;

class WorkerAttack : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(WorkerAttack, CallsMadeFromInsideAHostFunctionOnTheSameWorkerRunAfterIt) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<hl::async_sandbox> self, other;
        std::optional<std::int32_t> from_other, from_self;
        bool host_returned = false, ran_before_host_returned = false;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] {
                // On the worker, inside this sandbox's call: neither may run on top of it.
                other->async_call<std::int32_t>("AddLocal", 1, 2, [&](std::error_code ec, std::int32_t r) {
                    EXPECT_FALSE(ec);
                    ran_before_host_returned |= !host_returned;
                    from_other = r;
                });
                self->async_call<std::int32_t>("AddLocal", 3, 4, [&](std::error_code ec, std::int32_t r) {
                    EXPECT_FALSE(ec) << ec.message();
                    ran_before_host_returned |= !host_returned;
                    from_self = r;
                });
                host_returned = true;
            });
        };
        self.emplace(co_await make_sandbox(ex, setup));
        other.emplace(co_await make_sandbox(ex));
        co_await self->async_call<void>("VoidThroughHost");
        co_await until_on(ex, [&] { return from_other && from_self; });
        EXPECT_EQ(from_other, 3);
        EXPECT_EQ(from_self, 7);
        EXPECT_FALSE(ran_before_host_returned);
    });
}

TEST_F(WorkerAttack, ACallMadeFromAHostFunctionInALaterSliceIsNotRunOnTopOfIt) {
    // Slices after the first one run from the worker's queue, not from inside the scheduler: a
    // host function there must still not have another sandbox's guest run on its stack.
    hl::runtime rt({.workers = 1, .slice = 50us});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<hl::async_sandbox> other;
        bool in_host = false, nested = false;
        int submitted = 0, completed = 0;
        std::function<void(hl::uninitialized_sandbox&)> outer_setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
                if (a % 50 == 0) {
                    in_host = true;
                    ++submitted;
                    other->async_call<void>("VoidThroughHost", [&](std::error_code ec) {
                        EXPECT_FALSE(ec) << ec.message();
                        ++completed;
                    });
                    in_host = false;
                }
                return a + b;
            });
        };
        std::function<void(hl::uninitialized_sandbox&)> other_setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] { nested |= in_host; });
        };
        auto outer = co_await make_sandbox(ex, outer_setup);
        other.emplace(co_await make_sandbox(ex, other_setup));
        EXPECT_EQ(co_await outer.async_call<std::int64_t>("CallHostManyTimes", 2000), 2000 * 1999 / 2 + 2000);
        co_await until_on(ex, [&] { return completed == submitted; });
        EXPECT_EQ(submitted, 40);
        EXPECT_EQ(completed, submitted);
        EXPECT_FALSE(nested) << "another sandbox's guest ran inside a host function";
    });
}

TEST_F(WorkerAttack, ASandboxsQueueDoesNotHoldItsWorkerAgainstWorkPostedMeanwhile) {
    // A sandbox whose queue is refilled as fast as it drains (a busy client on another thread)
    // would otherwise keep its worker for ever: other sandboxes, timers and coroutines there wait.
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<hl::async_sandbox> busy;
        int calls = 0;
        bool posted_ran = false, posted_ran_before_second = false;
        std::function<void(hl::uninitialized_sandbox&)> busy_setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] {
                if (++calls == 1) {
                    asio::post(ex, [&] { posted_ran = true; });  // after the first, before the second
                } else {
                    posted_ran_before_second = posted_ran;
                }
            });
        };
        std::function<void(hl::uninitialized_sandbox&)> feeder_setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] {
                // From inside an operation: both are queued, to run one after the other.
                for (int i = 0; i < 2; ++i) busy->async_call<void>("VoidThroughHost", [](std::error_code ec) { EXPECT_FALSE(ec); });
            });
        };
        busy.emplace(co_await make_sandbox(ex, busy_setup));
        auto feeder = co_await make_sandbox(ex, feeder_setup);
        co_await feeder.async_call<void>("VoidThroughHost");
        co_await until_on(ex, [&] { return calls == 2; });
        EXPECT_EQ(calls, 2);
        EXPECT_TRUE(posted_ran_before_second) << "the sandbox's queue ran on without letting the worker serve others";
    });
}

TEST_F(WorkerAttack, ASandboxDestroyedInsideItsOwnSyncHostFunctionOnAWorker) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<hl::async_sandbox> sb;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostVoid", [&] { sb.reset(); });
        };
        sb.emplace(co_await make_sandbox(ex, setup));
        std::optional<std::error_code> first, outcome, queued;
        // Queued behind a first call (made on the worker, the next would start inline and be over
        // before the third is made).
        sb->async_call<std::uint64_t>("LoopFor", std::uint64_t{1'000'000}, [&](std::error_code ec, std::uint64_t) { first = ec; });
        sb->async_call<void>("VoidThroughHost", [&](std::error_code ec) { outcome = ec; });
        sb->async_call<std::int32_t>("AddLocal", 1, 1, [&](std::error_code ec, std::int32_t) { queued = ec; });
        co_await until_on(ex, [&] { return outcome && queued; });
        EXPECT_FALSE(sb);
        EXPECT_TRUE(*outcome == errc::cancelled || !*outcome) << outcome->message();
        EXPECT_EQ(queued, asio::error::operation_aborted);
    });
}

TEST_F(WorkerAttack, ASandboxDestroyedInsideItsOwnAsyncHostFunction) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<hl::async_sandbox> sb;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, [&](std::uint32_t) -> awaitable<void> {
                asio::steady_timer t(ex, 1ms);
                co_await t.async_wait(use_awaitable);
                sb.reset();  // the call waits for this coroutine
                co_await t.async_wait(as_tuple(use_awaitable));
            });
        };
        sb.emplace(co_await make_sandbox(ex, setup));
        std::optional<std::error_code> outcome, queued;
        sb->async_call<std::uint32_t>("SleepOnHost", 1u, [&](std::error_code ec, std::uint32_t) { outcome = ec; });
        sb->async_call<std::int32_t>("AddLocal", 1, 1, [&](std::error_code ec, std::int32_t) { queued = ec; });
        co_await until_on(ex, [&] { return outcome && queued; });
        EXPECT_FALSE(sb);
        EXPECT_TRUE(*outcome == errc::cancelled || !*outcome) << outcome->message();
        EXPECT_EQ(queued, asio::error::operation_aborted);
    });
}

TEST_F(WorkerAttack, AnAsyncHostFunctionAwaitingACallOnItsOwnSandboxIsEndedByTheDeadline) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    hl::test::watchdog dog(20s);
    run_on(ex, [&]() -> awaitable<void> {
        std::optional<hl::async_sandbox> sb;
        std::optional<std::error_code> inner;
        std::function<void(hl::uninitialized_sandbox&)> setup = [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, [&](std::uint32_t) -> awaitable<void> {
                // Queued behind the very call that waits for this coroutine: it cannot run.
                auto [ec, r] = co_await sb->async_call<std::int32_t>("AddLocal", 1, 1, as_tuple(use_awaitable));
                inner = ec;
            });
        };
        sb.emplace(co_await make_sandbox(ex, setup));
        dog.watch(sb->interrupt_handle());
        auto [ec, v] = co_await sb->async_call_for<std::uint32_t>(30ms, "SleepOnHost", 1u, as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::timed_out) << ec.message();
        EXPECT_EQ(inner, asio::error::operation_aborted);
        EXPECT_FALSE(dog.fired());
    });
}

class LeaseAttack : public WorkerAttack {
protected:
    // A pool of one sandbox on a one-worker runtime, whose HostSleep waits on io's timers.
    awaitable<hl::sandbox_pool> make_pool() {
        auto bind = [ex = io.get_executor()](hl::multi_use_sandbox& sb) {
            hl::register_async_host_function(sb, "HostSleep", ex, hl::timer_host_function(ex));
        };
        co_return co_await hl::sandbox_pool::async_create(io.get_executor(), hl::test::simpleguest(), {}, bind,
                                                          {.min_size = 1, .max_size = 1, .runtime = &rt}, use_awaitable);
    }
    // Starts `name` on a lease, releases the lease after `delay`, and checks the call ends and the
    // next holder gets a working, clean sandbox.
    template <class R, class... A>
    void release_mid_call(std::chrono::milliseconds delay, const char* name, A... args) {
        hl::test::run_coroutine(io, [&]() -> awaitable<void> {
            auto pool = co_await make_pool();
            for (int round = 0; round < 5; ++round) {
                auto lease = co_await pool.async_acquire();
                co_await lease.template async_call<void>("StoreSecret", std::string("secret"));
                std::optional<std::error_code> outcome;
                lease.template async_call<R>(name, args..., [&](std::error_code ec, auto...) { outcome = ec; });
                asio::steady_timer t(io, delay);
                co_await t.async_wait(use_awaitable);
                lease.release();
                co_await hl::test::until(io, [&] { return outcome.has_value(); });
                if (!outcome) {
                    ADD_FAILURE() << "the call did not end";
                    co_return;
                }
                EXPECT_EQ(*outcome, errc::cancelled) << outcome->message();
                auto next = co_await pool.async_acquire();
                EXPECT_EQ(co_await next.template async_call<std::string>("GetSecret"), "");
            }
        });
    }
    asio::io_context io;
    hl::runtime rt{{.workers = 1}};
};

TEST_F(LeaseAttack, ALeaseReleasedWhileItsCallIsBetweenSlices) { release_mid_call<void>(5ms, "Spin"); }

TEST_F(LeaseAttack, ALeaseReleasedWhileItsCallWaitsForAnAsyncHostFunction) {
    release_mid_call<std::uint32_t>(5ms, "SleepOnHost", 60'000u);
}

}  // namespace
