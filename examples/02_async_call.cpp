// SPDX-License-Identifier: Apache-2.0
// co_await guest calls from an Asio coroutine: the sandbox's vCPU runs on its own thread, the
// event loop never blocks, and a call that takes too long is cancelled by racing it with a timer.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <cstdio>

#include "hl/runtime/async_sandbox.hpp"

using namespace asio::experimental::awaitable_operators;

asio::awaitable<void> demo(asio::any_io_executor ex) {
    auto sb = co_await hl::async_sandbox::async_create(ex, HL_SIMPLEGUEST, {}, {});
    std::string echoed = co_await sb.async_call<std::string>("Echo", std::string("hello, async"));
    std::printf("Echo -> \"%s\"\n", echoed.c_str());

    // Errors as values instead of exceptions.
    auto [ec, n] = co_await sb.async_call<std::int32_t>("NoSuchFunction", asio::experimental::as_tuple(asio::use_awaitable));
    std::printf("NoSuchFunction -> %s (%s)\n", ec.message().c_str(), sb.last_error().c_str());

    // Spin never returns: whichever finishes first wins, and the loser is cancelled.
    auto snap = co_await sb.async_snapshot();
    asio::steady_timer timer(ex, std::chrono::milliseconds(50));
    auto winner = co_await (sb.async_call<void>("Spin", asio::experimental::as_tuple(asio::use_awaitable)) ||
                            timer.async_wait(asio::use_awaitable));
    std::printf("Spin vs 50 ms timer -> %s won; the guest was interrupted\n", winner.index() == 1 ? "timer" : "Spin");
    co_await sb.async_restore(snap);
    std::printf("restored; AddLocal(2, 3) -> %d\n", co_await sb.async_call<std::int32_t>("AddLocal", 2, 3));
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
