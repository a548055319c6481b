// SPDX-License-Identifier: Apache-2.0
// hl::script_pool on the JavaScript guest: a script loaded once, every request from its snapshot,
// host functions (plain and async) reached from the script, and the failures of creation and calls.
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/script_pool.hpp"

namespace {

using hl::errc;
using namespace std::chrono_literals;

constexpr const char* handlers = R"js(
var loadedWith = host.config(null);
var requests = 0;
function handle(input) {
    requests += 1;
    return { requests: requests, doubled: input.n * 2, config: loadedWith };
}
function user(id) { return host.fetchUser(id); }
function spin() { for (;;) {} }
function fail(message) { throw new Error(message); }
)js";

class ScriptPool : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    hl::script_options options(std::string source = handlers) {
        hl::script_options o;
        o.guest = HL_JSGUEST;
        o.name = "handlers.js";
        o.source = std::move(source);
        return o;
    }

    // Host functions for every pooled sandbox: config (plain) and fetchUser (a coroutine on `io`).
    hl::script_pool::bind_function bind() {
        return [this](hl::multi_use_sandbox& sb) {
            sb.register_host_function("config", [](std::string) { return std::string(R"({"mode":"test"})"); });
            hl::register_async_host_function(
                sb, "fetchUser", io.get_executor(), [this](std::string id) -> asio::awaitable<std::string> {
                    asio::steady_timer t(io, 1ms);
                    co_await t.async_wait(asio::use_awaitable);
                    co_return R"({"id":)" + id + R"(,"name":"user )" + id + R"("})";
                });
        };
    }

    template <class F>
    void run(F body) {
        hl::test::run_coroutine(io, std::move(body));
    }

    asio::io_context io;
};

TEST_F(ScriptPool, EveryRequestStartsFromTheLoadedScript) {
    run([&]() -> asio::awaitable<void> {
        auto pool = co_await hl::script_pool::async_create(io.get_executor(), options(), bind(), {.max_size = 2});
        for (int n = 0; n < 5; ++n) {
            // `requests` is 1 every time: each request's sandbox is the snapshot taken after Load,
            // whose top level read the host's config.
            EXPECT_EQ(co_await pool.async_call("handle", R"({"n":)" + std::to_string(n) + "}"),
                      R"({"requests":1,"doubled":)" + std::to_string(2 * n) + R"(,"config":{"mode":"test"}})");
        }
        EXPECT_EQ(co_await pool.async_eval("typeof handle"), R"("function")");
        co_await pool.async_drain();
        EXPECT_GE(pool.stats().restores, 5u);
        pool.close();
    });
}

TEST_F(ScriptPool, ScriptsAwaitAsyncHostFunctions) {
    run([&]() -> asio::awaitable<void> {
        auto pool = co_await hl::script_pool::async_create(io.get_executor(), options(), bind(), {.max_size = 4});
        std::vector<std::string> replies(8);
        std::atomic<int> done{0};
        for (int i = 0; i < 8; ++i) {
            pool.async_call("user", std::to_string(i), [&, i](std::error_code ec, std::string reply) {
                EXPECT_FALSE(ec) << ec.message();
                replies[static_cast<std::size_t>(i)] = std::move(reply);
                ++done;
            });
        }
        asio::steady_timer t(io);
        for (int waited = 0; done < 8 && waited < 10000; ++waited) {
            t.expires_after(1ms);
            co_await t.async_wait(asio::use_awaitable);
        }
        EXPECT_EQ(done.load(), 8);
        if (done != 8) co_return;
        for (int i = 0; i < 8; ++i) {
            EXPECT_EQ(replies[static_cast<std::size_t>(i)],
                      R"({"id":)" + std::to_string(i) + R"(,"name":"user )" + std::to_string(i) + R"("})");
        }
        pool.close();
    });
}

TEST_F(ScriptPool, ScriptErrorsComeBackWithTheirMessage) {
    run([&]() -> asio::awaitable<void> {
        auto pool = co_await hl::script_pool::async_create(io.get_executor(), options(), bind(), {.max_size = 1});
        hl::diagnostics d;
        std::error_code ec;
        co_await pool.async_call("fail", R"("boom")",
                                 hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::guest_error);
        EXPECT_NE(d.message.find("Error: boom"), std::string::npos) << d.message;
        EXPECT_NE(d.message.find("handlers.js"), std::string::npos) << d.message;
        co_await pool.async_call("nope", "null", hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::unknown_function);
        EXPECT_NE(d.message.find("no function 'nope'"), std::string::npos) << d.message;
        EXPECT_EQ(co_await pool.async_call("handle", R"({"n":1})"),
                  R"({"requests":1,"doubled":2,"config":{"mode":"test"}})");
        pool.close();
    });
}

TEST_F(ScriptPool, AnEndlessScriptIsStoppedAndTheNextRequestIsClean) {
    run([&]() -> asio::awaitable<void> {
        hl::pool_options po;
        po.max_size = 1;
        po.call_limits.timeout = 50ms;
        auto pool = co_await hl::script_pool::async_create(io.get_executor(), options(), bind(), po);
        std::error_code ec;
        co_await pool.async_call("spin", "null", asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(ec, errc::timed_out);
        co_await pool.async_call_for(hl::call_limits{.cpu_time = 20ms}, "spin", "null",
                                     asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(ec, errc::cpu_budget_exceeded);
        EXPECT_EQ(co_await pool.async_call("handle", R"({"n":2})"),
                  R"({"requests":1,"doubled":4,"config":{"mode":"test"}})");
        pool.close();
    });
}

TEST_F(ScriptPool, AScriptThatDoesNotLoadFailsTheCreation) {
    run([&]() -> asio::awaitable<void> {
        hl::diagnostics d;
        std::error_code ec;
        auto pool = co_await hl::script_pool::async_create(
            io.get_executor(), options("function broken( {"), bind(), {},
            hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::guest_error);
        EXPECT_NE(d.message.find("the script could not be loaded"), std::string::npos) << d.message;
        EXPECT_NE(d.message.find("SyntaxError"), std::string::npos) << d.message;
        EXPECT_FALSE(pool);

        pool = co_await hl::script_pool::async_create(
            io.get_executor(), options("throw new Error('top level')"), bind(), {},
            hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::guest_error);
        EXPECT_NE(d.message.find("top level"), std::string::npos) << d.message;

        pool = co_await hl::script_pool::async_create(
            io.get_executor(), options("var x = host.absent(1);"), {}, {},
            hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::guest_error);
        EXPECT_NE(d.message.find("host function 'absent' failed"), std::string::npos) << d.message;
    });
}

TEST_F(ScriptPool, CreationRefusesWhatCannotWork) {
    run([&]() -> asio::awaitable<void> {
        hl::diagnostics d;
        std::error_code ec;
        auto o = options();
        o.guest.clear();
        co_await hl::script_pool::async_create(io.get_executor(), o, {}, {},
                                               hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::usage_error);
        EXPECT_NE(d.message.find("script_options::guest is empty"), std::string::npos) << d.message;

        o = options();
        o.guest = HL_SIMPLEGUEST;  // a guest, but no script engine: it has no Load
        co_await hl::script_pool::async_create(io.get_executor(), o, {}, {},
                                               hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::unknown_function) << d.message;

        o = options();
        o.guest = "/nonexistent/jsguest.elf";
        co_await hl::script_pool::async_create(io.get_executor(), o, {}, {},
                                               hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_TRUE(ec);
        EXPECT_NE(d.message.find("could not be started"), std::string::npos) << d.message;

        co_await hl::sandbox_pool::async_create(io.get_executor(), std::shared_ptr<const hl::snapshot>(), {}, {},
                                                hl::with_diagnostics(d, asio::redirect_error(asio::use_awaitable, ec)));
        EXPECT_EQ(ec, errc::usage_error);
        EXPECT_NE(d.message.find("null snapshot"), std::string::npos) << d.message;
    });
}

TEST_F(ScriptPool, AnEmptyPoolRefusesCalls) {
    run([&]() -> asio::awaitable<void> {
        auto pool = co_await hl::script_pool::async_create(io.get_executor(), options(), bind(), {.max_size = 1});
        hl::script_pool moved = std::move(pool);
        std::error_code ec;
        co_await pool.async_call("handle", "{}", asio::redirect_error(asio::use_awaitable, ec));
        EXPECT_EQ(ec, errc::usage_error);
        EXPECT_EQ(co_await moved.async_call("handle", R"({"n":0})"),
                  R"({"requests":1,"doubled":0,"config":{"mode":"test"}})");
        moved.close();
    });
}

}  // namespace
