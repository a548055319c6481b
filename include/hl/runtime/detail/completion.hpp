// SPDX-License-Identifier: Apache-2.0
// How an operation delivers its result to its caller's handler.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/defer.hpp>
#include <asio/execution.hpp>
#include <asio/prefer.hpp>
#include <asio/system_executor.hpp>

#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include "hl/runtime/diagnostics.hpp"

namespace asio::detail {
template <typename T, typename Blocking>
class promise_executor;
}  // namespace asio::detail

namespace hl::detail {

/// Executors that may run a handler on any thread: asio::system_executor's, and use_future's
/// (Asio's detail::promise_executor, declared here rather than with all of <asio/use_future.hpp>).
template <class Executor>
struct runs_anywhere : std::false_type {};
template <class Blocking, class Relationship, class Allocator>
struct runs_anywhere<asio::basic_system_executor<Blocking, Relationship, Allocator>> : std::true_type {};
template <class T, class Blocking>
struct runs_anywhere<asio::detail::promise_executor<T, Blocking>> : std::true_type {};

/// Holds a handler and work on its associated executor until it completes. The completion is
/// deferred to that executor: on the thread that runs it already (a coroutine awaiting a call on
/// its own worker) that is a queue push with no wake-up; never is the handler run inside the
/// initiating function, so back-to-back calls do not nest stacks. The exception: a handler that
/// may run anywhere (use_future's) runs where the operation completes, usually its worker. Through
/// asio::system_context it would take one more thread hop, and the runtime's workers, which may
/// outlive main(), would post into a context that the process's exit destroys (TSan saw a worker
/// signal its condition variable while the main thread's static destructors freed it).
template <class Handler>
class completion {
public:
    completion(Handler handler, const asio::any_io_executor& fallback, diagnostics* diag = nullptr)
        : work_(asio::prefer(asio::get_associated_executor(handler, fallback),
                             asio::execution::outstanding_work.tracked)),
          handler_(std::move(handler)),
          diag_(diag) {}

    template <class... Values>
    void complete(std::error_code ec, std::string message, Values&&... values) {
        auto ex = work_;
        post(std::move(ex), [h = std::move(handler_), w = std::move(work_), diag = diag_, ec,
                             message = std::move(message),
                             v = std::make_tuple(std::forward<Values>(values)...)]() mutable {
            if (diag) diag->message = ec ? std::move(message) : std::string();
            asio::get_associated_cancellation_slot(h).clear();
            std::apply([&](auto&&... x) { std::move(h)(ec, std::move(x)...); }, std::move(v));
        });
    }

    /// As complete(), with (error code, message, values...) made by `make()` when the completion
    /// runs: the last moment to decide them.
    template <class Make>
    void complete_with(Make make) {
        auto ex = work_;
        post(std::move(ex), [h = std::move(handler_), w = std::move(work_), diag = diag_, make = std::move(make)]() mutable {
            auto values = make();
            if (diag) diag->message = std::get<0>(values) ? std::move(std::get<1>(values)) : std::string();
            asio::get_associated_cancellation_slot(h).clear();
            std::apply([&](auto ec, auto&&, auto&&... x) { std::move(h)(ec, std::move(x)...); }, std::move(values));
        });
    }

    Handler& handler() noexcept { return handler_; }
    diagnostics* diag() const noexcept { return diag_; }

private:
    template <class Executor, class F>
    static void post(Executor ex, F f) {
        if constexpr (runs_anywhere<Executor>::value) {
            f();
        } else {
            asio::defer(std::move(ex), std::move(f));
        }
    }

    std::decay_t<decltype(asio::prefer(std::declval<asio::associated_executor_t<Handler, asio::any_io_executor>>(),
                                       asio::execution::outstanding_work.tracked))>
        work_;
    Handler handler_;
    diagnostics* diag_;
};

}  // namespace hl::detail
