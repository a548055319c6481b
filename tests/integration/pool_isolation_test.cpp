// SPDX-License-Identifier: Apache-2.0
// Through a pool of one sandbox, a task that leaves an instruction half done inside KVM neither steers
// the next task nor takes the pool down.
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "async_support.hpp"
#include "hostile_support.hpp"
#include "hl/runtime/sandbox_pool.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;

using hl::test::canary_value;

class PoolIsolation : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    awaitable<hl::sandbox_pool> make_pool_of_one() {
        co_return co_await hl::sandbox_pool::async_create(io.get_executor(), hl::test::hostileguest(), {},
                                                          [](hl::multi_use_sandbox&) {},
                                                          {.min_size = 1, .max_size = 1});
    }

    // The next task's view of the sandbox: its own result, and the snapshot's memory.
    awaitable<void> expect_clean(hl::sandbox_pool& pool, std::int64_t token) {
        auto [e1, echoed] = co_await pool.async_call<std::int64_t>("Identity", token, as_tuple(use_awaitable));
        EXPECT_FALSE(e1) << e1.message();
        EXPECT_EQ(echoed, token);
        auto [e2, canary] = co_await pool.async_call<std::int64_t>("ReadCanary", as_tuple(use_awaitable));
        EXPECT_FALSE(e2) << e2.message();
        EXPECT_EQ(canary, canary_value);
        auto [e3, sum] = co_await pool.async_call<std::int64_t>("LandingSum", as_tuple(use_awaitable));
        EXPECT_FALSE(e3) << e3.message();
        EXPECT_EQ(sum, 0);
    }

    asio::io_context io;
};

TEST_F(PoolIsolation, AnInstructionLeftHalfDoneDoesNotSteerTheNextTask) {
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto pool = co_await make_pool_of_one();
        for (std::int64_t round = 0; round < 5; ++round) {
            auto [e1, forged] = co_await pool.async_call<std::int64_t>("InThenForge", as_tuple(use_awaitable));
            EXPECT_TRUE(e1);
            co_await expect_clean(pool, 42 + round);
            auto [e2] = co_await pool.async_call<void>("InsOverCanary", as_tuple(use_awaitable));
            EXPECT_TRUE(e2);
            co_await expect_clean(pool, 1000 + round);
        }
    });
}

TEST_F(PoolIsolation, RepInsDoesNotTakeAPoolOfOneDown) {
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto pool = co_await make_pool_of_one();
        for (std::int64_t round = 0; round < 5; ++round) {
            auto [e] = co_await pool.async_call<void>(round % 2 ? "RepIns" : "RepInsBackwards", std::int64_t{1} << 30,
                                                      as_tuple(use_awaitable));
            EXPECT_TRUE(e);
            co_await expect_clean(pool, round);
        }
        EXPECT_EQ(pool.stats().size, 1u);
    });
}

}  // namespace
