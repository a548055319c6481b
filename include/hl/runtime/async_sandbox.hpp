// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "hl/runtime/detail/initiate.hpp"
#include "hl/runtime/diagnostics.hpp"
#include "hl/runtime/runtime.hpp"
#include "hl/sandbox.hpp"

namespace hl {

namespace detail {
std::shared_ptr<worker> place(const asio::any_io_executor& ex);
inline constexpr const char* empty_sandbox_message =
    "the async_sandbox is empty (default-constructed or moved from), and has no executor";
}  // namespace detail

/// A sandbox that lives on one worker thread of an hl::runtime for its whole life (creation,
/// calls, snapshot, restore and destruction all happen there), driven from Asio. It goes on the
/// worker `ex` belongs to when `ex` is a worker's executor (runtime::get_executor()), otherwise on
/// the next worker of runtime::default_runtime().
///
/// Every operation is an Asio initiating function: its completion runs on the handler's
/// associated executor (by default `ex`), and works with asio::use_awaitable (the default token),
/// asio::experimental::as_tuple, asio::use_future, plain callbacks, and hl::with_diagnostics(),
/// which also delivers the failure's message. A call awaited by a coroutine on the sandbox's own
/// worker runs the guest right there (no thread switch); from anywhere else it is passed to the
/// worker once and completes on the caller's executor once.
///
/// Move-only, as Asio's I/O objects are: a handle is the sandbox, and there is one. A moved-from or
/// default-constructed handle is empty (operator bool is false): its operations complete with
/// errc::usage_error on the handler's executor, or on the executor it kept (a moved-from handle keeps
/// it); with neither, they throw hl::error(errc::usage_error). interrupt_handle() throws that error;
/// last_error() is empty.
///
/// Operations queued on one sandbox run in order. Calls honour per-operation cancellation: one
/// cancelled while queued never runs and completes with asio::error::operation_aborted; one
/// cancelled while running is interrupted (interrupt_handle().kill()) and completes with
/// hl::errc::cancelled, leaving the sandbox poisoned until restored. Destroying the handle kills a
/// running call, completes queued operations with asio::error::operation_aborted, and destroys the
/// sandbox on its worker once the call has unwound.
///
/// Thread-safety: operations may be started from any thread.
///
/// Lifetimes: keep the executor's io_context alive, and running, until every operation on the
/// sandbox has completed (completions are deferred to it); keep the runtime alive longer than its
/// sandboxes.
class async_sandbox {
public:
    using executor_type = asio::any_io_executor;

    async_sandbox() = default;
    async_sandbox(const async_sandbox&) = delete;
    async_sandbox& operator=(const async_sandbox&) = delete;
    /// `other` is left empty, with its executor.
    async_sandbox(async_sandbox&& other) noexcept : state_(std::move(other.state_)), ex_(other.ex_) {}
    async_sandbox& operator=(async_sandbox&& other) noexcept {
        if (this != &other) {
            close();  // a sandbox this handle had is destroyed
            state_ = std::move(other.state_);
            ex_ = other.ex_;
        }
        return *this;
    }
    ~async_sandbox() { close(); }

    /// Loads `guest`, runs `setup` (register host functions and handlers) and evolves the sandbox,
    /// all on its worker. Completes with void(std::error_code, async_sandbox).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                             std::function<void(uninitialized_sandbox&)> setup, Token&& token = {}) {
        return create_with(
            ex,
            [guest = std::move(guest), config, setup = std::move(setup)] {
                auto u = uninitialized_sandbox::from_file(guest, config);
                if (setup) setup(u);
                return std::move(u).evolve();
            },
            std::forward<Token>(token));
    }

    /// A sandbox mapping `snap` copy-on-write (no guest initialisation), created on its worker;
    /// `bind` registers its host functions and handlers there. Completes with
    /// void(std::error_code, async_sandbox).
    template <class Token = asio::use_awaitable_t<>>
    static auto async_create_from(executor_type ex, std::shared_ptr<const snapshot> snap,
                                  std::function<void(multi_use_sandbox&)> bind, Token&& token = {}) {
        return create_with(
            ex,
            [snap = std::move(snap), bind = std::move(bind)] {
                auto sb = multi_use_sandbox::from_snapshot(snap);
                if (bind) bind(sb);
                return sb;
            },
            std::forward<Token>(token));
    }

    /// Calls the guest function `name`: `async_call<R>(name, args..., token)`; with no token,
    /// asio::use_awaitable. Completes with void(std::error_code, R) (void(std::error_code) for R =
    /// void); the error's message goes to hl::with_diagnostics() and last_error(). Arguments are
    /// copied when the call is made.
    template <class R = void, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
        return call_with<R>(name, {}, std::forward<ArgsAndToken>(args_and_token)...);
    }

    /// As async_call(), with a deadline: past `timeout` the guest is interrupted and the call
    /// completes with errc::timed_out (the sandbox is then poisoned until restored).
    template <class R = void, class Rep, class Period, class... ArgsAndToken>
        requires detail::return_type<R>
    auto async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                        ArgsAndToken&&... args_and_token) {
        return call_with<R>(name, std::chrono::duration_cast<std::chrono::nanoseconds>(timeout),
                            std::forward<ArgsAndToken>(args_and_token)...);
    }

    /// Takes a snapshot on the worker. Completes with
    /// void(std::error_code, std::shared_ptr<const snapshot>).
    template <class Token = asio::use_awaitable_t<>>
    auto async_snapshot(Token&& token = {}) {
        using snap_ptr = std::shared_ptr<const snapshot>;
        const std::uint64_t epoch = state_ ? state_->epoch() : 0;
        return detail::initiate_task<void(std::error_code, snap_ptr)>(
            state_, ex_, detail::empty_sandbox_message, std::forward<Token>(token),
            [epoch](detail::sandbox_state& s, std::string& message) {
                snap_ptr snap;
                const auto ec = detail::guarded(s, epoch, message, [&] { snap = s.sandbox().snapshot(); });
                return std::pair(ec, std::make_tuple(std::move(snap)));
            },
            [] { return std::make_tuple(snap_ptr()); });
    }

    /// Restores `snap` on the worker; once restored, last_error() is empty. Completes with
    /// void(std::error_code).
    template <class Token = asio::use_awaitable_t<>>
    auto async_restore(std::shared_ptr<const snapshot> snap, Token&& token = {}) {
        const std::uint64_t epoch = state_ ? state_->epoch() : 0;
        return detail::initiate_task<void(std::error_code)>(
            state_, ex_, detail::empty_sandbox_message, std::forward<Token>(token),
            [epoch, snap = std::move(snap)](detail::sandbox_state& s, std::string& message) {
                const auto ec = detail::guarded(s, epoch, message, [&] { s.sandbox().restore(snap); });
                if (!ec) s.set_last_error(epoch, {});
                return std::pair(ec, std::tuple<>());
            },
            [] { return std::tuple<>(); });
    }

    /// Stops the running call from any thread (see hl::interrupt_handle). Throws hl::error
    /// (errc::usage_error) on an empty handle.
    hl::interrupt_handle interrupt_handle() const {
        if (!state_) {
            throw error(errc::usage_error,
                        "interrupt_handle() on an empty async_sandbox (default-constructed or moved from)");
        }
        return state_->interrupt_handle();
    }

    /// The message of the last operation that failed; empty on an empty handle. Shared by everyone
    /// using the sandbox: prefer hl::with_diagnostics(), which is per operation.
    std::string last_error() const { return state_ ? state_->last_error() : std::string(); }

    /// The executor completions default to; a moved-from handle keeps it, a default-constructed one
    /// has none.
    executor_type get_executor() const noexcept { return ex_; }
    /// False for an empty handle.
    explicit operator bool() const noexcept { return state_ != nullptr; }

    /// For the library (the pool): the scheduler state behind the handle, which the handle gives up.
    std::shared_ptr<detail::sandbox_state> release_state() noexcept { return std::move(state_); }
    async_sandbox(std::shared_ptr<detail::sandbox_state> state, executor_type ex) noexcept
        : state_(std::move(state)), ex_(std::move(ex)) {}

private:
    explicit async_sandbox(executor_type ex) noexcept : ex_(std::move(ex)) {}

    void close() noexcept {
        if (auto s = std::move(state_)) {
            try {
                s->close();
            } catch (...) {
                // Out of memory posting the destruction: the sandbox is left to the last reference.
            }
        }
    }

    template <class Make, class Token>
    static auto create_with(executor_type ex, Make make, Token&& token) {
        std::shared_ptr<detail::sandbox_state> state;
        if (ex) state = std::make_shared<detail::sandbox_state>(detail::place(ex));
        return detail::initiate_task<void(std::error_code, async_sandbox)>(
            std::move(state), ex, "async_create needs an executor", std::forward<Token>(token),
            [ex, make = std::move(make)](detail::sandbox_state& s, std::string& message) mutable {
                const auto ec = detail::guarded(s, 0, message, [&] { s.set_sandbox(make()); });
                if (ec) {
                    s.close();
                    return std::pair(ec, std::make_tuple(async_sandbox(ex)));
                }
                return std::pair(ec, std::make_tuple(async_sandbox(s.shared_from_this(), ex)));
            },
            [ex] { return std::make_tuple(async_sandbox(ex)); });
    }

    template <class R, class... ArgsAndToken>
    auto call_with(std::string_view name, std::chrono::nanoseconds timeout, ArgsAndToken&&... args_and_token) {
        return detail::with_token_last(
            [&](auto&& token, const auto&... args) {
                detail::call_context context;
                context.timeout = timeout;
                context.empty_message = detail::empty_sandbox_message;
                return detail::initiate_call<R>(state_, ex_, name, std::move(context),
                                                std::forward<decltype(token)>(token), args...);
            },
            std::forward<ArgsAndToken>(args_and_token)...);
    }

    std::shared_ptr<detail::sandbox_state> state_;
    executor_type ex_;
};

}  // namespace hl
