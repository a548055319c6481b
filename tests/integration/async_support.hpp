// SPDX-License-Identifier: Apache-2.0
// For tests of the async runtime: run one coroutine to completion on an io_context, and bound
// tests whose failure would otherwise be a hang.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "guest_paths.hpp"
#include "hl/interrupt.hpp"
#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace hl::test {

/// Spawns `body()` on `io`, runs `io` until it has no work left, and fails the test if the
/// coroutine threw or did not finish.
template <class F>
void run_coroutine(asio::io_context& io, F body) {
    bool finished = false;
    asio::co_spawn(io, body(), [&](std::exception_ptr e) {
        finished = true;
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            ADD_FAILURE() << "coroutine threw: " << x.what();
        }
    });
    io.run();
    EXPECT_TRUE(finished);
}

/// Turns a hang into a test failure: if still alive after `limit`, it fails the test and from then
/// on keeps killing the guest calls of every sandbox it watches, so that calls whose cancellation
/// was lost end and the test can finish. Tests poll fired() to stop early.
class watchdog {
public:
    explicit watchdog(std::chrono::milliseconds limit)
        : thread_([this, limit] {
              std::unique_lock lock(mutex_);
              if (wake_.wait_for(lock, limit, [this] { return done_; })) return;
              fired_ = true;
              ADD_FAILURE() << "the watchdog fired after " << limit.count()
                            << " ms: a call did not end; killing the guests it watches";
              while (!wake_.wait_for(lock, std::chrono::milliseconds(2), [this] { return done_; })) {
                  for (const auto& h : watched_) h.kill();
              }
          }) {}
    ~watchdog() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;

    /// From any thread (for example a pool's bind function, on a vCPU thread).
    void watch(hl::interrupt_handle h) {
        std::lock_guard lock(mutex_);
        watched_.push_back(std::move(h));
    }
    bool fired() const {
        std::lock_guard lock(mutex_);
        return fired_;
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::vector<hl::interrupt_handle> watched_;
    bool done_ = false, fired_ = false;
    std::thread thread_;  // last: starts once the rest is ready
};

/// Waits on `io`, a millisecond at a time, until `done()`; gives up after `limit` (the caller checks).
template <class F>
asio::awaitable<void> until(asio::io_context& io, F done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    for (auto waited = std::chrono::milliseconds(0); !done() && waited < limit; waited += std::chrono::milliseconds(1)) {
        asio::steady_timer t(io, std::chrono::milliseconds(1));
        co_await t.async_wait(asio::use_awaitable);
    }
}

/// A fixture for tests of async_sandbox: an io_context, and simpleguest sandboxes with HostAdd.
class async_test : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    asio::awaitable<hl::async_sandbox> make() {
        co_return co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                           [](hl::uninitialized_sandbox& u) {
                                                               u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
                                                           });
    }

    // Runs `body` as a coroutine on io and fails the test if it throws.
    template <class F>
    void run(F body) {
        hl::test::run_coroutine(io, std::move(body));
    }

    // Waits, a millisecond at a time, until `done()`; gives up after `limit` (the caller checks).
    template <class F>
    asio::awaitable<void> until(F done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
        return hl::test::until(io, std::move(done), limit);
    }

    asio::io_context io;
};

/// A fixture for tests that attack a pool of simpleguest sandboxes: an io_context to run one
/// coroutine on, and pools whose sandboxes a watchdog may watch.
class pool_attack_test : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    // Callers pass `extra` as a named function: GCC 12 destroys a temporary lambda that is part of
    // a co_await expression twice (its captures are released twice).
    asio::awaitable<hl::sandbox_pool> make(hl::pool_options options, watchdog* dog = nullptr,
                                           std::function<void(hl::multi_use_sandbox&)> extra = {}) {
        return hl::sandbox_pool::async_create(
            io.get_executor(), simpleguest(), {},
            [dog, extra](hl::multi_use_sandbox& sb) {
                if (dog) dog->watch(sb.interrupt_handle());
                if (extra) extra(sb);
            },
            options, asio::use_awaitable);
    }

    template <class F>
    void run(F body) {
        run_coroutine(io, std::move(body));
    }

    template <class F>
    asio::awaitable<void> until(F done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
        return hl::test::until(io, std::move(done), limit);
    }

    asio::io_context io;
};

}  // namespace hl::test
