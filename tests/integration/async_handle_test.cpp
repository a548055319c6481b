// SPDX-License-Identifier: Apache-2.0
// Handles that are empty (moved from, default-constructed) or dropped in the middle of their own
// call, and the runtime's executors.
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <gtest/gtest.h>

#include <cstdint>
#include <future>
#include <optional>
#include <system_error>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/runtime.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;
using hl::test::error_of;

using Async = hl::test::async_test;

TEST_F(Async, AMovedFromHandleFailsEveryOperationWithUsageError) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        auto clean = co_await sb.async_snapshot();
        auto moved = std::move(sb);
        EXPECT_FALSE(sb);
        EXPECT_TRUE(moved);
        auto [e1, r1] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 2, as_tuple(use_awaitable));
        EXPECT_EQ(e1, errc::usage_error);
        EXPECT_EQ(r1, 0);
        auto [e2, snap] = co_await sb.async_snapshot(as_tuple(use_awaitable));
        EXPECT_EQ(e2, errc::usage_error);
        EXPECT_FALSE(snap);
        auto [e3] = co_await sb.async_restore(clean, as_tuple(use_awaitable));
        EXPECT_EQ(e3, errc::usage_error);
        EXPECT_EQ(error_of([&] { (void)sb.interrupt_handle(); }), errc::usage_error);
        EXPECT_EQ(sb.last_error(), "");
        // A plain callback completes, posted, on the executor the moved-from handle kept.
        std::optional<std::error_code> posted;
        sb.async_call<std::int32_t>("AddLocal", 1, 2, [&](std::error_code ec, std::int32_t) { posted = ec; });
        EXPECT_FALSE(posted) << "never completed inline";
        co_await until([&] { return posted.has_value(); });
        EXPECT_EQ(posted, errc::usage_error);
        EXPECT_EQ(co_await moved.async_call<std::int32_t>("AddLocal", 1, 2), 3) << "the sandbox went with the move";
    });
}

TEST_F(Async, ADefaultConstructedHandleFailsEveryOperationWithUsageError) {
    hl::async_sandbox sb;
    EXPECT_FALSE(sb);
    EXPECT_FALSE(sb.get_executor());
    EXPECT_EQ(sb.last_error(), "");
    EXPECT_EQ(error_of([&] { (void)sb.interrupt_handle(); }), errc::usage_error);
    // Neither the handle nor the callback has an executor to complete on: the initiation throws.
    EXPECT_EQ(error_of([&] { sb.async_call<void>("Spin", [](std::error_code) { ADD_FAILURE() << "completed"; }); }),
              errc::usage_error);
    run([&]() -> awaitable<void> {
        auto [ec] = co_await sb.async_call<void>("Spin", as_tuple(use_awaitable));  // the coroutine's executor
        EXPECT_EQ(ec, errc::usage_error);
        auto [ec2, snap] = co_await sb.async_snapshot(as_tuple(use_awaitable));
        EXPECT_EQ(ec2, errc::usage_error);
    });
}

TEST_F(Async, DroppingTheLastHandleInsideItsOwnHostFunctionLetsTheCallFinishFirst) {
    std::optional<hl::async_sandbox> sb;
    run([&]() -> awaitable<void> {
        sb.emplace(co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                            [&](hl::uninitialized_sandbox& u) {
                                                                u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
                                                                    sb.reset();  // on the vCPU thread, mid-call
                                                                    return a + b;
                                                                });
                                                            }));
    });
    io.restart();
    // A callback, so that the initiation holds no reference: the host function drops the last one.
    std::optional<std::error_code> outcome;
    std::int32_t result = 0;
    sb->async_call<std::int32_t>("Add", 1, 2, [&](std::error_code ec, std::int32_t r) {
        outcome = ec;
        result = r;
    });
    io.run();  // returns once the completion ran
    ASSERT_TRUE(outcome);
    EXPECT_FALSE(sb);
    // The destruction waited for the host function to return, then killed the call (or found it over).
    EXPECT_TRUE(*outcome == errc::cancelled || (!*outcome && result == 3)) << outcome->message();
}

TEST(Runtime, WorkersAreNamedExecutorsAndRefuseAnIndexOutOfRange) {
    hl::runtime rt({.workers = 2});
    EXPECT_EQ(rt.size(), 2u);
    EXPECT_EQ(error_of([&] { (void)rt.get_executor(2); }), errc::usage_error);
    EXPECT_FALSE(rt.running_in_this_thread());
    // A worker's executor runs handlers on that worker's thread, which knows it is one.
    std::promise<bool> on_worker;
    asio::post(rt.get_executor(1), [&] { on_worker.set_value(rt.running_in_this_thread()); });
    EXPECT_TRUE(on_worker.get_future().get());
}

}  // namespace
