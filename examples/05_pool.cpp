// SPDX-License-Identifier: Apache-2.0
// A pool of sandboxes for one task each: every task gets a sandbox exactly as clean as the pool's
// snapshot, and the restore happens after the task, off its path.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <cstdio>

#include "hl/runtime/sandbox_pool.hpp"

asio::awaitable<void> demo(asio::any_io_executor ex) {
    auto pool = co_await hl::sandbox_pool::async_create(
        ex, HL_SIMPLEGUEST, {},
        [](hl::multi_use_sandbox& sb) {
            sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
        },
        {.min_size = 2, .max_size = 4});

    // One call per task: acquire, call, release.
    for (int i = 0; i < 3; ++i) {
        std::printf("task %d: IncrementCounter -> %d (always 1: every task starts clean)\n", i,
                    co_await pool.async_call<std::int32_t>("IncrementCounter"));
    }

    // A session of several calls on one sandbox.
    {
        auto lease = co_await pool.async_acquire();
        co_await lease.async_call<void>("StoreSecret", std::string("only mine"));
        std::printf("in my lease: GetSecret -> \"%s\"\n", (co_await lease.async_call<std::string>("GetSecret")).c_str());
    }
    std::printf("next task: GetSecret -> \"%s\"\n", (co_await pool.async_call<std::string>("GetSecret")).c_str());

    co_await pool.async_drain();
    const auto stats = pool.stats();
    std::printf("pool: %zu sandboxes, %zu idle, %llu restores\n", stats.size, stats.idle,
                static_cast<unsigned long long>(stats.restores));
    pool.close();
}

int main() {
    asio::io_context io;
    int status = 0;
    asio::co_spawn(io, demo(io.get_executor()), [&](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            std::fprintf(stderr, "error: %s\n", x.what());
            status = x.code() == hl::errc::kvm_unavailable ? 77 : 1;
        }
    });
    io.run();
    return status;
}
