// SPDX-License-Identifier: Apache-2.0
// Shared by the runtime's benchmark files: waiting on the benchmark's thread for an operation that
// completes on a worker. Not asio::use_future: its completions go to Asio's system executor, whose
// own threads would then show in the thread count and compete with the workers.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>

#include <exception>
#include <future>
#include <system_error>
#include <tuple>

#include "bench_common.hpp"
#include "hl/runtime/async_sandbox.hpp"

namespace hl::bench {

/// Calls `start(handler)` and waits for the handler: void(std::error_code, R...) with no executor
/// of its own, so it runs on the operation's. Returns the R... or throws std::system_error.
template <class... R, class Start>
std::tuple<R...> wait(Start start) {
    std::promise<std::tuple<R...>> done;
    start([&](std::error_code ec, R... r) {
        if (ec) {
            done.set_exception(std::make_exception_ptr(std::system_error(ec)));
        } else {
            done.set_value(std::tuple<R...>(std::move(r)...));
        }
    });
    return done.get_future().get();
}

/// Runs `coroutine` on `ex` and waits for it to end (rethrowing what it threw).
template <class Executor>
void run_on(const Executor& ex, asio::awaitable<void> coroutine) {
    std::promise<void> done;
    asio::co_spawn(ex, std::move(coroutine), [&](std::exception_ptr e) {
        if (e) {
            done.set_exception(e);
        } else {
            done.set_value();
        }
    });
    done.get_future().get();
}

/// A simpleguest sandbox on the worker `ex` belongs to.
inline hl::async_sandbox make_on(hl::async_sandbox::executor_type ex) {
    return std::get<0>(wait<hl::async_sandbox>([&](auto handler) {
        hl::async_sandbox::async_create(ex, HL_SIMPLEGUEST, {}, {}, std::move(handler));
    }));
}

}  // namespace hl::bench
