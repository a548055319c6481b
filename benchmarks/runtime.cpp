// SPDX-License-Identifier: Apache-2.0
// The async runtime: co_await'ed calls and many coroutines sharing sandboxes.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include "bench_common.hpp"
#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using asio::awaitable;

std::vector<hl::async_sandbox> make_async(asio::io_context& io, int count) {
    std::vector<hl::async_sandbox> boxes;
    for (int i = 0; i < count; ++i) {
        boxes.push_back(hl::async_sandbox::async_create(io.get_executor(), HL_SIMPLEGUEST, {}, {}, asio::use_future).get());
    }
    return boxes;
}

// One coroutine, one sandbox: a co_await'ed Echo per iteration (compare with guest_calls/call/default).
void async_call(benchmark::State& state) {
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });
    auto boxes = make_async(io, 1);
    work.reset();
    loop.join();
    io.restart();
    const std::string hello = "hello\n";
    asio::co_spawn(io, [&]() -> awaitable<void> {
        for (auto _ : state) benchmark::DoNotOptimize(co_await boxes[0].async_call<std::string>("Echo", hello));
    }, asio::detached);
    io.run();
}

// `coroutines` coroutines calling Echo in a loop, spread over 4 sandboxes; reports calls per second.
void concurrent_calls(benchmark::State& state, int coroutines) {
    asio::io_context io;
    std::vector<hl::async_sandbox> boxes;
    {
        auto work = asio::make_work_guard(io);
        std::thread loop([&] { io.run(); });
        boxes = make_async(io, 4);
        work.reset();
        loop.join();
    }
    const std::string hello = "hello\n";
    constexpr int calls_per_coroutine = 16;
    for (auto _ : state) {
        io.restart();
        for (int c = 0; c < coroutines; ++c) {
            asio::co_spawn(io, [&, c]() -> awaitable<void> {
                auto& sb = boxes[static_cast<std::size_t>(c) % boxes.size()];
                for (int i = 0; i < calls_per_coroutine; ++i) co_await sb.async_call<std::string>("Echo", hello);
            }, asio::detached);
        }
        io.run();
    }
    state.SetItemsProcessed(state.iterations() * coroutines * calls_per_coroutine);
}

hl::sandbox_pool make_pool(asio::io_context& io, std::size_t size) {
    auto work = asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });
    auto pool = hl::sandbox_pool::async_create(io.get_executor(), HL_SIMPLEGUEST, {}, {},
                                               {.min_size = size, .max_size = size}, asio::use_future)
                    .get();
    auto drained = pool.async_drain(asio::use_future);  // prewarmed
    drained.get();
    work.reset();
    loop.join();
    io.restart();
    return pool;
}

// `coroutines` coroutines each running Echo tasks through a pool of 4 (acquire, call, restore).
void pool_call(benchmark::State& state, int coroutines) {
    asio::io_context io;
    auto pool = make_pool(io, 4);
    const std::string hello = "hello\n";
    constexpr int calls_per_coroutine = 16;
    for (auto _ : state) {
        io.restart();
        for (int c = 0; c < coroutines; ++c) {
            asio::co_spawn(io, [&]() -> awaitable<void> {
                for (int i = 0; i < calls_per_coroutine; ++i) co_await pool.async_call<std::string>("Echo", hello);
            }, asio::detached);
        }
        io.run();
    }
    state.SetItemsProcessed(state.iterations() * coroutines * calls_per_coroutine);
}

// Acquiring a sandbox that is idle, and giving it back (the restore happens off this path).
void pool_acquire_idle(benchmark::State& state) {
    asio::io_context io;
    auto pool = make_pool(io, 2);
    asio::co_spawn(io, [&]() -> awaitable<void> {
        for (auto _ : state) {
            state.PauseTiming();
            co_await pool.async_drain();  // both sandboxes idle again
            state.ResumeTiming();
            auto lease = co_await pool.async_acquire();
            benchmark::DoNotOptimize(lease);
            state.PauseTiming();
            lease.release();
            state.ResumeTiming();
        }
    }, asio::detached);
    io.run();
}

const int registered = [] {
    hl::bench::add("runtime/async_call", async_call);
    for (int n : {1, 16, 256, 1024}) hl::bench::add("runtime/concurrent_calls/" + std::to_string(n), concurrent_calls, n);
    for (int n : {1, 16, 256, 1024}) hl::bench::add("runtime/pool_call/" + std::to_string(n), pool_call, n);
    hl::bench::add("runtime/pool_acquire_idle", pool_acquire_idle);
    return 0;
}();

}  // namespace
