// SPDX-License-Identifier: Apache-2.0
// The Asio promise: once the application's io_context::run() has returned (all its work done), the
// library no longer runs or destroys the application's code and objects (bind and setup functions,
// host functions and what they capture) on its workers. Each test gives the library an object whose
// destructor takes a while and records when it has finished, and checks, right after run()
// returned, that it has: a destructor still under way on a worker (or not started yet) is one that
// races with the application tearing down what it uses.
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using namespace std::chrono_literals;
using asio::awaitable;
using hl::test::pool_attack_test;
using hl::test::run_coroutine;

// Shared with the test, so that a probe destroyed late never writes to freed memory.
struct probe_log {
    std::atomic<int> begun = 0, finished = 0;
    const std::thread::id test_thread = std::this_thread::get_id();
    std::atomic<bool> elsewhere = false;  // a destructor ran on another thread
};

// Where a debugger can stop to see who destroys a probe.
[[gnu::noinline]] void probe_destroying() { asm volatile(""); }

// An application object whose destructor takes a while (as one that joins a thread, flushes a
// file or frees a large structure does).
struct probe {
    explicit probe(std::shared_ptr<probe_log> l) : log(std::move(l)) {}
    probe(const probe&) = delete;
    probe& operator=(const probe&) = delete;
    ~probe() {
        if (std::this_thread::get_id() != log->test_thread) log->elsewhere = true;
        ++log->begun;
        probe_destroying();
        std::this_thread::sleep_for(200ms);
        ++log->finished;
    }
    std::shared_ptr<probe_log> log;
};

void expect_destroyed_before_run_returned(probe_log& log, const char* what) {
    const int begun = log.begun.load(), finished = log.finished.load();
    // Let a late destructor finish before the test's objects go, and say where it ran. (A worker
    // may destroy it, as long as the application's run() waits for that.)
    for (int i = 0; i < 100 && log.finished.load() == 0; ++i) std::this_thread::sleep_for(10ms);
    const char* where = log.elsewhere.load() ? " (on a worker)" : " (on the application's thread)";
    EXPECT_EQ(begun, 1) << what << where;
    EXPECT_EQ(finished, 1) << what << where << ": destroyed after io_context::run() returned";
}

using AfterRun = pool_attack_test;

// Closing the handle posts the sandbox's destruction (and with it its host functions and their
// captures) to the worker: the application's executor counts that as work.
TEST_F(AfterRun, AnAsyncSandboxsHostFunctionsAreDestroyedBeforeRunReturns) {
    auto log = std::make_shared<probe_log>();
    // Named, not a temporary in the co_await expression (GCC 12 destroys those twice).
    std::function<void(hl::uninitialized_sandbox&)> setup = [log](hl::uninitialized_sandbox& u) {
        u.register_host_function("HostAdd", [p = std::make_shared<probe>(log)](std::int32_t a, std::int32_t b) {
            return a + b + (p ? 0 : 1);
        });
    };
    run([&]() -> awaitable<void> {
        auto sb = co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                           std::move(setup));
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", 2, 3), 5);
    });  // sb destroyed inside the coroutine, before run() returns
    expect_destroyed_before_run_returned(*log, "the host function's capture");
}

// The same through a pool: its idle sandboxes (host functions registered by bind) are dropped
// with the pool and destroyed on their workers.
TEST_F(AfterRun, APoolsHostFunctionsAreDestroyedBeforeRunReturns) {
    auto log = std::make_shared<probe_log>();
    auto bind = [log](hl::multi_use_sandbox& sb) {
        sb.register_host_function("HostAdd", [p = std::make_shared<probe>(log)](std::int32_t a, std::int32_t b) {
            return a + b + (p ? 0 : 1);
        });
    };
    run([&]() -> awaitable<void> {
        std::optional<hl::sandbox_pool> pool(co_await make({.min_size = 1, .max_size = 1}, nullptr, bind));
        co_await until([&] { return pool->stats().idle == 1; });
        pool.reset();
    });
    expect_destroyed_before_run_returned(*log, "the host function a pooled sandbox got from bind");
}

// A pool destroyed while it grows: the creation's handler may hold the last reference to the
// pool's core, whose copy of bind goes with it, on the worker; the work it holds must go after.
TEST_F(AfterRun, APoolDestroyedWhileGrowingDestroysItsBindFunctionBeforeRunReturns) {
    auto log = std::make_shared<probe_log>();
    std::function<void(hl::multi_use_sandbox&)> bind = [p = std::make_shared<probe>(log)](hl::multi_use_sandbox&) {
        std::this_thread::sleep_for(100ms);  // the creations are still on their way when the pool goes
    };
    run([&]() -> awaitable<void> {
        std::optional<hl::sandbox_pool> pool(co_await make({.min_size = 2, .max_size = 2}, nullptr, std::move(bind)));
        pool.reset();
    });
    expect_destroyed_before_run_returned(*log, "the pool's bind function");
}

// A lease released, then the pool destroyed: the restore's completion, on the worker, may hold
// the last reference to the pool's core.
TEST_F(AfterRun, APoolDestroyedWhileRestoringDestroysItsBindFunctionBeforeRunReturns) {
    auto log = std::make_shared<probe_log>();
    std::function<void(hl::multi_use_sandbox&)> bind = [p = std::make_shared<probe>(log)](hl::multi_use_sandbox&) {};
    run([&]() -> awaitable<void> {
        std::optional<hl::sandbox_pool> pool(co_await make({.min_size = 1, .max_size = 1}, nullptr, std::move(bind)));
        {
            auto lease = co_await pool->async_acquire();
            co_await lease.async_call<std::int32_t>("EchoInt32", 5);
        }  // released: a restore is queued on the worker
        pool.reset();
    });
    expect_destroyed_before_run_returned(*log, "the pool's bind function");
}

// A pool whose template cannot be created, on a runtime of the application's: the template's
// completion runs on the worker, and what holds bind there must let it go before completing.
TEST_F(AfterRun, APoolWhoseTemplateFailsDestroysItsBindFunctionBeforeRunReturns) {
    hl::runtime rt({.workers = 1});
    auto log = std::make_shared<probe_log>();
    std::function<void(hl::multi_use_sandbox&)> bind = [p = std::make_shared<probe>(log)](hl::multi_use_sandbox&) {};
    // The worker is busy a moment (with the application's own work, as it may be): the template's
    // failure comes after the initiating function has let go of its copy of bind.
    asio::post(rt.get_executor(0), [] { std::this_thread::sleep_for(50ms); });
    run([&]() -> awaitable<void> {
        auto [ec, pool] = co_await hl::sandbox_pool::async_create(
            io.get_executor(), "/nonexistent/guest", {}, std::move(bind), {.min_size = 1, .max_size = 1, .runtime = &rt},
            asio::experimental::as_tuple(asio::use_awaitable));
        EXPECT_TRUE(ec);
    });
    expect_destroyed_before_run_returned(*log, "the pool's bind function");
}

// The other direction: a host function holding a strand of the application's io_context (an
// async host function's executor, say). The application destroys the sandbox, its run() returns
// and it destroys the io_context; a worker that destroyed the host function after that would
// unlink the strand from a strand service freed with the io_context (TSan: use of a destroyed
// mutex in strand_impl::~strand_impl).
TEST(AfterRunContext, AHostFunctionHoldingAStrandDoesNotOutliveItsIoContext) {
    HL_REQUIRE_KVM();
    struct holder {
        explicit holder(asio::io_context& io) : strand(asio::make_strand(io)) {}
        ~holder() { std::this_thread::sleep_for(100ms); }  // then `strand` goes
        asio::strand<asio::io_context::executor_type> strand;
    };
    {
        asio::io_context io;
        std::function<void(hl::uninitialized_sandbox&)> setup = [h = std::make_shared<holder>(io)](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostAdd", [h](std::int32_t a, std::int32_t b) { return a + b + (h ? 0 : 1); });
        };
        run_coroutine(io, [&]() -> awaitable<void> {
            auto sb = co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                               std::move(setup));
            (void)sb;
        });
    }  // the io_context, and its strand service, are gone
    std::this_thread::sleep_for(300ms);  // a late destruction on the worker would come meanwhile
}


// The plainest use: one pool.async_call(), then the pool destroyed. The call gives its sandbox
// back after its completion is on its way, and the restore that queues completes on the worker
// later still, each possibly holding the last reference to the pool's core. The worker is busy a
// moment with other work (queued by the host function), so both come after the completion ran.
TEST_F(AfterRun, APoolCallThenThePoolDestroyedDestroysItsBindFunctionBeforeRunReturns) {
    hl::runtime rt({.workers = 1});
    auto log = std::make_shared<probe_log>();
    std::function<void(hl::multi_use_sandbox&)> bind = [p = std::make_shared<probe>(log),
                                                        ex = rt.get_executor(0)](hl::multi_use_sandbox& sb) {
        sb.register_host_function("HostAdd", [ex](std::int32_t a, std::int32_t b) {
            asio::post(ex, [] { std::this_thread::sleep_for(50ms); });  // other work for the worker
            return a + b;
        });
    };
    run([&]() -> awaitable<void> {
        std::optional<hl::sandbox_pool> pool(co_await hl::sandbox_pool::async_create(
            io.get_executor(), hl::test::simpleguest(), {}, std::move(bind),
            {.min_size = 1, .max_size = 1, .runtime = &rt}));
        co_await until([&] { return pool->stats().idle == 1; });
        EXPECT_EQ(co_await pool->async_call<std::int32_t>("Add", 2, 3), 5);
        pool.reset();
    });
    expect_destroyed_before_run_returned(*log, "the pool's bind function");
}

}  // namespace
