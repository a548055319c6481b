// SPDX-License-Identifier: Apache-2.0
// For tests of sandbox_pool: a fixture that makes pools of simpleguest sandboxes.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace hl::test {

/// A fixture for tests of sandbox_pool: an io_context, and pools of simpleguest sandboxes with
/// HostAdd, optionally watched.
class pool_test : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    asio::awaitable<hl::sandbox_pool> make(hl::pool_options options) {
        co_return co_await hl::sandbox_pool::async_create(
            io.get_executor(), hl::test::simpleguest(), {},
            [](hl::multi_use_sandbox& sb) {
                sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
            },
            options);
    }

    // A pool whose sandboxes `dog` can kill, and whose interrupt handles running() tells apart.
    asio::awaitable<hl::sandbox_pool> make_watched(hl::pool_options options, hl::test::watchdog& dog) {
        co_return co_await hl::sandbox_pool::async_create(
            io.get_executor(), hl::test::simpleguest(), {},
            [&](hl::multi_use_sandbox& sb) {
                dog.watch(sb.interrupt_handle());
                std::lock_guard lock(handles_mutex);
                handles.push_back(sb.interrupt_handle());
            },
            options);
    }

    bool a_guest_runs() {
        std::lock_guard lock(handles_mutex);
        return std::any_of(handles.begin(), handles.end(), [](const hl::interrupt_handle& h) { return h.running(); });
    }

    template <class F>
    void run(F body) {
        hl::test::run_coroutine(io, std::move(body));
    }

    // Waits, a millisecond at a time, until `done()`; gives up after `limit` (the caller checks).
    template <class F>
    asio::awaitable<void> until(F done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
        return hl::test::until(io, std::move(done), limit);
    }

    std::mutex handles_mutex;
    std::vector<hl::interrupt_handle> handles;

    asio::io_context io;
};

}  // namespace hl::test
