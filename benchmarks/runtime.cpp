// SPDX-License-Identifier: Apache-2.0
// The async runtime's calls: co_await'ed on the sandbox's own worker and from elsewhere, many
// coroutines on the workers sharing sandboxes, and tasks through a pool spread over the workers.
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <atomic>

#include "hl/runtime/runtime.hpp"
#include "hl/runtime/sandbox_pool.hpp"
#include "runtime_common.hpp"

namespace {

using asio::awaitable;
using hl::bench::make_on;
using hl::bench::run_on;

const std::string hello = "hello\n";
constexpr int calls_per_coroutine = 16;

// Runs `coroutine(c)` for c in [0, count) on the runtime's workers in turn, and waits for all.
template <class F>
void run_spread(hl::runtime& rt, int count, F coroutine) {
    std::atomic<int> running{count};
    std::promise<void> all_done;
    for (int c = 0; c < count; ++c) {
        asio::co_spawn(rt.get_executor(static_cast<std::size_t>(c) % rt.size()), coroutine(c), [&](std::exception_ptr) {
            if (running.fetch_sub(1) == 1) all_done.set_value();
        });
    }
    all_done.get_future().get();
}

// One coroutine on worker 0 co_await'ing Echo on a sandbox of worker 0: the guest runs inline
// (compare with guest_calls/call/default).
void async_call_inline(benchmark::State& state) {
    hl::runtime rt;
    auto sb = make_on(rt.get_executor(0));
    run_on(rt.get_executor(0), [&]() -> awaitable<void> {
        for (auto _ : state) benchmark::DoNotOptimize(co_await sb.async_call<std::string>("Echo", hello));
    }());
}

// One coroutine on an io_context of the benchmark's own thread co_await'ing Echo on a sandbox of
// worker 0: one hop to the worker, one back.
void async_call(benchmark::State& state) {
    hl::runtime rt;
    auto sb = make_on(rt.get_executor(0));
    asio::io_context io;
    asio::co_spawn(io, [&]() -> awaitable<void> {
        for (auto _ : state) benchmark::DoNotOptimize(co_await sb.async_call<std::string>("Echo", hello));
    }, [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
    io.run();
}

// One coroutine on worker 1 co_await'ing Echo on a sandbox of worker 0: a hop to the worker and
// one back, between two threads of the runtime, which spin a while before they sleep.
void async_call_from_worker(benchmark::State& state) {
    hl::runtime rt({.workers = 2});
    auto sb = make_on(rt.get_executor(0));
    run_on(rt.get_executor(1), [&]() -> awaitable<void> {
        for (auto _ : state) benchmark::DoNotOptimize(co_await sb.async_call<std::string>("Echo", hello));
    }());
}

// `coroutines` coroutines spread over the workers, each calling Echo in a loop on one of two
// sandboxes of its own worker; reports calls per second.
void concurrent_calls(benchmark::State& state, int coroutines) {
    hl::runtime rt;
    std::vector<hl::async_sandbox> boxes;  // box b lives on worker b % size()
    for (std::size_t b = 0; b < 2 * rt.size(); ++b) boxes.push_back(make_on(rt.get_executor(b % rt.size())));
    for (auto _ : state) {
        run_spread(rt, coroutines, [&](int c) -> awaitable<void> {
            auto& sb = boxes[static_cast<std::size_t>(c) % boxes.size()];
            for (int i = 0; i < calls_per_coroutine; ++i) co_await sb.async_call<std::string>("Echo", hello);
        });
    }
    state.SetItemsProcessed(state.iterations() * coroutines * calls_per_coroutine);
}

// Four coroutines on the one worker call Echo back to back, each on a sandbox of its own, while a
// fifth sandbox of the worker runs Spin: calls per second. What the runaway leaves them follows
// its share of the busy worker (runtime_options::sliced_share, in percent in the name); compare
// with each other and with runtime/concurrent_calls/1.
void calls_beside_a_runaway(benchmark::State& state, int share_percent) {
    hl::runtime rt({.workers = 1, .sliced_share = share_percent / 100.0});
    const auto ex = rt.get_executor(0);
    auto runaway = make_on(ex);
    std::vector<hl::async_sandbox> boxes;
    for (int b = 0; b < 4; ++b) boxes.push_back(make_on(ex));
    std::promise<std::error_code> spin;
    runaway.async_call_for<void>(std::chrono::minutes(10), "Spin", [&](std::error_code ec) { spin.set_value(ec); });
    for (auto _ : state) {
        run_spread(rt, 4, [&](int c) -> awaitable<void> {
            auto& sb = boxes[static_cast<std::size_t>(c)];
            for (int i = 0; i < calls_per_coroutine; ++i) co_await sb.async_call<std::string>("Echo", hello);
        });
    }
    runaway.interrupt_handle().kill();
    spin.get_future().wait();
    state.SetItemsProcessed(state.iterations() * 4 * calls_per_coroutine);
}

// A prewarmed pool of `size` sandboxes spread over rt's workers.
hl::sandbox_pool make_pool(hl::runtime& rt, std::size_t size) {
    const hl::pool_options options{.min_size = size, .max_size = size, .max_waiters = 4096, .runtime = &rt};
    auto [created] = hl::bench::wait<hl::sandbox_pool>([&](auto handler) {
        hl::sandbox_pool::async_create(rt.get_executor(0), HL_SIMPLEGUEST, {}, {}, options, std::move(handler));
    });
    hl::sandbox_pool pool = std::move(created);  // a variable, not a binding: lambdas capture it (clang 14)
    hl::bench::wait<>([&](auto handler) { pool.async_drain(std::move(handler)); });
    return pool;
}

// Echo tasks (acquire, call, release and restore) through a pool of two sandboxes per worker.
// With one coroutine, tasks back to back on worker 0; with more, `coroutines` coroutines spread
// over the workers, 16 tasks each. Reports tasks per second.
void pool_call(benchmark::State& state, int coroutines) {
    hl::runtime rt;
    auto pool = make_pool(rt, 2 * rt.size());
    if (coroutines == 1) {
        run_on(rt.get_executor(0), [&]() -> awaitable<void> {
            for (auto _ : state) benchmark::DoNotOptimize(co_await pool.async_call<std::string>("Echo", hello));
        }());
        state.SetItemsProcessed(state.iterations());
        return;
    }
    for (auto _ : state) {
        run_spread(rt, coroutines, [&](int) -> awaitable<void> {
            for (int i = 0; i < calls_per_coroutine; ++i) co_await pool.async_call<std::string>("Echo", hello);
        });
    }
    state.SetItemsProcessed(state.iterations() * coroutines * calls_per_coroutine);
}

// Acquiring a sandbox that is idle on the acquiring worker, and giving it back (the restore
// happens off this path).
void pool_acquire_idle(benchmark::State& state) {
    hl::runtime rt;
    auto pool = make_pool(rt, 2 * rt.size());
    run_on(rt.get_executor(0), [&]() -> awaitable<void> {
        for (auto _ : state) {
            state.PauseTiming();
            co_await pool.async_drain();  // every sandbox idle again
            state.ResumeTiming();
            auto lease = co_await pool.async_acquire();
            benchmark::DoNotOptimize(lease);
            state.PauseTiming();
            lease.release();
            state.ResumeTiming();
        }
    }());
}

const int registered = [] {
    hl::bench::add("runtime/async_call_inline", async_call_inline);
    hl::bench::add("runtime/async_call", async_call);
    hl::bench::add("runtime/async_call_from_worker", async_call_from_worker);
    for (int n : {1, 16, 256, 1024}) hl::bench::add("runtime/concurrent_calls/" + std::to_string(n), concurrent_calls, n);
    for (int n : {1, 16, 256, 1024}) hl::bench::add("runtime/pool_call/" + std::to_string(n), pool_call, n);
    for (int share : {100, 25}) {
        hl::bench::add("runtime/calls_beside_a_runaway/share:" + std::to_string(share), calls_beside_a_runaway, share);
    }
    hl::bench::add("runtime/pool_acquire_idle", pool_acquire_idle);
    return 0;
}();

}  // namespace
