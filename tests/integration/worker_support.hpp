// SPDX-License-Identifier: Apache-2.0
// For tests of the runtime's workers: run a coroutine on a worker and wait for it, bounded.
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <dirent.h>
#include <exception>
#include <fstream>
#include <functional>
#include <string>
#include <future>
#include <memory>

#include "async_support.hpp"
#include "hl/runtime/async_sandbox.hpp"

namespace hl::test {

/// Spawns `body()` on `ex` (a worker's executor) and waits for it here; fails the test if it threw
/// or did not finish within `limit` (the test then goes on; what it shares may still be in use, so
/// callers keep `limit` far above what the body needs).
template <class Executor, class F>
void run_on(const Executor& ex, F body, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    asio::co_spawn(ex, body(), [done](std::exception_ptr e) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                ADD_FAILURE() << "coroutine threw: " << x.what();
            }
        }
        done->set_value();
    });
    ASSERT_EQ(finished.wait_for(limit), std::future_status::ready) << "the coroutine on the worker did not finish";
}

/// Waits on `ex`, a millisecond at a time, until `done()`; gives up after `limit` (the caller checks).
template <class Executor, class F>
asio::awaitable<void> until_on(Executor ex, F done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    for (auto waited = std::chrono::milliseconds(0); !done() && waited < limit; waited += std::chrono::milliseconds(1)) {
        asio::steady_timer t(ex, std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
    }
}

/// A simpleguest sandbox on `ex`; `setup` (a named function: see pool_attack_test::make) registers
/// host functions.
inline asio::awaitable<hl::async_sandbox> make_sandbox(asio::any_io_executor ex,
                                                       std::function<void(hl::uninitialized_sandbox&)> setup = {}) {
    co_return co_await hl::async_sandbox::async_create(ex, simpleguest(), {}, std::move(setup), asio::use_awaitable);
}

/// Threads of this process, leaving out the kernel's per-VM threads (kvm-nx-lpage-recovery),
/// which the kernel lists among them.
inline int thread_count() {
    int n = 0;
    if (DIR* d = ::opendir("/proc/self/task")) {
        while (const dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
            std::string name;
            std::getline(comm, name);
            n += name.rfind("kvm", 0) != 0;
        }
        ::closedir(d);
    }
    return n;
}

}  // namespace hl::test
