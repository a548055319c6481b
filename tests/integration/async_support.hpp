// SPDX-License-Identifier: Apache-2.0
// For tests of the async runtime: run one coroutine to completion on an io_context.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <exception>

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

}  // namespace hl::test
