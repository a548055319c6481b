// SPDX-License-Identifier: Apache-2.0
// The Asio promise: once the application's io_context::run() has returned (all its work done), the
// library no longer runs or destroys the application's code and objects (bind and setup functions,
// host functions and what they capture) on its workers. Each test gives the library an object whose
// destructor takes a while and records when it has finished, and checks, right after run()
// returned, that it has: a destructor still under way on a worker (or not started yet) is one that
// races with the application tearing down what it uses.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/system_executor.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
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
    explicit probe(std::shared_ptr<probe_log> l, std::chrono::milliseconds takes = 200ms)
        : log(std::move(l)), takes(takes) {}
    probe(const probe&) = delete;
    probe& operator=(const probe&) = delete;
    ~probe() {
        if (std::this_thread::get_id() != log->test_thread) log->elsewhere = true;
        ++log->begun;
        probe_destroying();
        std::this_thread::sleep_for(takes);
        ++log->finished;
    }
    std::shared_ptr<probe_log> log;
    std::chrono::milliseconds takes;
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
            io.get_executor(), "/nonexistent/guest", {}, std::move(bind),
            {.min_size = 1, .max_size = 1, .runtime = &rt}, asio::experimental::as_tuple(asio::use_awaitable));
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
        std::function<void(hl::uninitialized_sandbox&)> setup =
            [h = std::make_shared<holder>(io)](hl::uninitialized_sandbox& u) {
                u.register_host_function("HostAdd",
                                         [h](std::int32_t a, std::int32_t b) { return a + b + (h ? 0 : 1); });
            };
        run_coroutine(io, [&]() -> awaitable<void> {
            auto sb = co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                               std::move(setup));
            (void)sb;
        });
    }  // the io_context, and its strand service, are gone
    std::this_thread::sleep_for(300ms);  // a late destruction on the worker would come meanwhile
}

// Handles on executors that are not an io_context's (nothing to cover): letting them go neither
// crashes nor takes work on a context of another kind mistaken for an io_context.
TEST(AfterRunContext, HandlesOnExecutorsOfOtherKindsAreClosedWithoutACover) {
    HL_REQUIRE_KVM();
    asio::thread_pool threads(1);
    const asio::any_io_executor executors[] = {asio::system_executor(), threads.get_executor()};
    for (const auto& ex : executors) {
        auto sb = hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, nullptr, asio::use_future).get();
        EXPECT_EQ(sb.async_call<std::int32_t>("EchoInt32", 7, asio::use_future).get(), 7);
    }  // each closed here, off its executor's threads
    threads.join();
}

// A pool grown for a task initiated off the io_context's threads (that growth is not covered).
// The task ends, the pool is destroyed, run() returns and the io_context goes while the creation
// is still on the worker, which then must not even ask the freed io_context whether it runs there
// (ASan: a read of freed memory in running_in_this_thread()).
TEST(AfterRunContext, AnUncoveredCreationEndingAfterTheIoContextLeavesItAlone) {
    HL_REQUIRE_KVM();
    auto log = std::make_shared<probe_log>();
    auto io = std::make_unique<asio::io_context>();
    std::optional<hl::sandbox_pool> pool;
    std::function<void(hl::multi_use_sandbox&)> bind = [p = std::make_shared<probe>(log, 0ms)](hl::multi_use_sandbox&) {
        std::this_thread::sleep_for(300ms);  // still creating when the io_context goes
    };
    {
        auto guard = asio::make_work_guard(*io);
        std::thread runner([&] { io->run(); });
        pool.emplace(hl::sandbox_pool::async_create(io->get_executor(), hl::test::simpleguest(), {}, std::move(bind),
                                                    {.min_size = 0, .max_size = 1}, asio::use_future)
                         .get());
        guard.reset();
        runner.join();
    }
    io->restart();
    std::error_code got;
    pool->async_call<std::int32_t>("EchoInt32", 5, [&](std::error_code ec, std::int32_t) { got = ec; });  // grows
    pool.reset();  // the task is withdrawn; the creation goes on
    io->run();     // the task's completion: nothing of the application's is pending
    EXPECT_EQ(got, asio::error::operation_aborted);
    io.reset();
    for (int i = 0; i < 100 && log->finished.load() == 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(log->finished.load(), 1) << "the pool's bind function was never destroyed";
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

// When run() returns without waiting for the library's work (io_context::stop(), an exception out
// of run(), run_for()), the application may destroy its io_context at once. The destruction waits
// (up to a second) for what a worker still runs or destroys of the application's, so that it is
// gone when the destruction returns, and the worker then lets its work on the io_context go while
// that is alive (ASan and TSan: a use after free in the scheduler's work_finished otherwise).
// What merely waits (a pool task for a sandbox, a handler in the queue) is not waited for.
class AfterRunStopped : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    // A setup function whose host function captures a probe.
    static std::function<void(hl::uninitialized_sandbox&)> setup_with(std::shared_ptr<probe_log> log,
                                                                       std::chrono::milliseconds takes = 200ms) {
        return [log, takes](hl::uninitialized_sandbox& u) {
            u.register_host_function("HostAdd", [p = std::make_shared<probe>(log, takes)](std::int32_t a,
                                                                                           std::int32_t b) {
                return a + b + (p ? 0 : 1);
            });
        };
    }

    // A sandbox whose host function captures a probe (slow to destroy by `takes`) is closed at the
    // end of a coroutine whose completion stops the io_context: run() returns without waiting
    // for the worker, and the io_context is destroyed at once, as an application shutting down
    // does.
    static void close_stop_and_destroy(const std::shared_ptr<probe_log>& log, std::chrono::milliseconds takes) {
        asio::io_context io;
        auto setup = setup_with(log, takes);
        bool finished = false;
        asio::co_spawn(
            io,
            [&]() -> awaitable<void> {
                auto sb = co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                                   std::move(setup));
                EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", 2, 3), 5);
            },  // sb closed: its destruction is on the worker now
            [&](std::exception_ptr e) {
                finished = true;
                EXPECT_FALSE(e);
                io.stop();
            });
        io.run();
        EXPECT_TRUE(finished);
        EXPECT_TRUE(io.stopped());
    }

    // The probe destroyed (on a worker, perhaps late), and the workers still serving.
    static void expect_destroyed_in_the_end(const probe_log& log) {
        for (int i = 0; i < 300 && log.finished.load() == 0; ++i) std::this_thread::sleep_for(10ms);
        EXPECT_EQ(log.begun.load(), 1);
        EXPECT_EQ(log.finished.load(), 1) << "never destroyed: lost with the io_context";
        asio::io_context io;
        run_coroutine(io, [&]() -> awaitable<void> {
            auto sb = co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {}, nullptr);
            EXPECT_EQ(co_await sb.async_call<std::int32_t>("EchoInt32", 7), 7);
        });
    }
};

TEST_F(AfterRunStopped, TheIoContextsDestructionWaitsForASandboxClosedJustBeforeStop) {
    auto log = std::make_shared<probe_log>();
    close_stop_and_destroy(log, 200ms);
    EXPECT_EQ(log->finished.load(), 1) << "the io_context was destroyed before the sandbox it covered";
    expect_destroyed_in_the_end(*log);
}

TEST_F(AfterRunStopped, TheIoContextsDestructionWaitsForASandboxClosedJustBeforeAnExceptionLeftRun) {
    auto log = std::make_shared<probe_log>();
    {
        asio::io_context io;
        auto setup = setup_with(log);
        asio::co_spawn(
            io,
            [&]() -> awaitable<void> {
                {
                    auto sb = co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(),
                                                                       {}, std::move(setup));
                    EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", 2, 3), 5);
                }
                throw std::runtime_error("the application's own failure");
            },
            [](std::exception_ptr e) {
                if (e) std::rethrow_exception(e);
            });
        EXPECT_THROW(io.run(), std::runtime_error);
    }
    EXPECT_EQ(log->finished.load(), 1) << "the io_context was destroyed before the sandbox it covered";
    expect_destroyed_in_the_end(*log);
}

// The same through a pool, destroyed (its idle sandboxes with it, on their worker) just before
// stop(), with a restore still queued on the worker.
TEST_F(AfterRunStopped, TheIoContextsDestructionWaitsForAPoolDestroyedJustBeforeStop) {
    auto log = std::make_shared<probe_log>();
    {
        asio::io_context io;
        std::function<void(hl::multi_use_sandbox&)> bind =
            [p = std::make_shared<probe>(log)](hl::multi_use_sandbox&) {};
        asio::co_spawn(
            io,
            [&]() -> awaitable<void> {
                std::optional<hl::sandbox_pool> pool(co_await hl::sandbox_pool::async_create(
                    io.get_executor(), hl::test::simpleguest(), {}, std::move(bind), {.min_size = 1, .max_size = 1}));
                {
                    auto lease = co_await pool->async_acquire();
                    EXPECT_EQ(co_await lease.async_call<std::int32_t>("EchoInt32", 5), 5);
                }  // released: a restore is queued on the worker
                pool.reset();
                io.stop();
            },
            [](std::exception_ptr e) { EXPECT_FALSE(e); });
        io.run();
    }
    EXPECT_EQ(log->finished.load(), 1) << "the io_context was destroyed before the pool's bind function";
    expect_destroyed_in_the_end(*log);
}

// Stopped while pool tasks run and more wait for a sandbox: the destruction waits for the calls
// under way, not for the tasks that wait (one a sandbox was handed to is queued in the
// io_context, and is destroyed with the queue). Each ends (its coroutine is destroyed, nothing
// leaks), its sandbox goes back to the pool, and the pool and its bind function go in the end.
TEST_F(AfterRunStopped, PoolTasksWaitingForASandboxWhenTheIoContextIsDestroyedEndAndGiveTheirSandboxesBack) {
    auto log = std::make_shared<probe_log>();
    auto frames = std::make_shared<std::atomic<int>>(0);
    struct frame_count {  // lives in a task's coroutine frame (co_spawn keeps the function there)
        explicit frame_count(std::shared_ptr<std::atomic<int>> n) : n(std::move(n)) { ++*this->n; }
        frame_count(frame_count&& other) noexcept = default;  // leaves `other` without n
        frame_count(const frame_count&) = delete;
        frame_count& operator=(const frame_count&) = delete;
        frame_count& operator=(frame_count&&) = delete;
        ~frame_count() {
            if (n) --*n;
        }
        std::shared_ptr<std::atomic<int>> n;
    };
    constexpr int tasks = 6;
    int calls = 0;
    {
        asio::io_context io;
        std::function<void(hl::multi_use_sandbox&)> bind =
            [p = std::make_shared<probe>(log, 50ms)](hl::multi_use_sandbox&) {};
        std::optional<hl::sandbox_pool> pool;
        asio::co_spawn(
            io,
            [&]() -> awaitable<void> {
                pool.emplace(co_await hl::sandbox_pool::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                                     std::move(bind), {.min_size = 2, .max_size = 2}));
                co_await hl::test::until(io, [&] { return pool->stats().idle == 2; });
                for (int i = 0; i < tasks; ++i) {
                    asio::co_spawn(
                        io,
                        [&, f = frame_count(frames)]() -> awaitable<void> {
                            for (;;) {
                                EXPECT_EQ(co_await pool->async_call<std::int32_t>("EchoInt32", 5), 5);
                                if (++calls == 20) io.stop();
                            }
                        },
                        asio::detached);
                }
            },
            asio::detached);
        io.run();
        EXPECT_EQ(frames->load(), tasks);
        pool.reset();  // the application's objects go first; the io_context last
    }
    EXPECT_EQ(frames->load(), 0) << "a task's coroutine outlived its io_context: leaked";
    expect_destroyed_in_the_end(*log);
}

// A worker held up longer than the destruction waits (a host function's capture slow to
// destroy): the destruction returns, and the worker, when it is done, leaves the freed io_context
// alone.
TEST_F(AfterRunStopped, AWorkerHeldUpLongerThanTheDestructionWaitsLeavesTheFreedIoContextAlone) {
    auto log = std::make_shared<probe_log>();
    close_stop_and_destroy(log, 1500ms);
    EXPECT_EQ(log->finished.load(), 0) << "the destruction is to stop waiting after a second";
    expect_destroyed_in_the_end(*log);
}

}  // namespace
