// SPDX-License-Identifier: Apache-2.0
// The definitions of async_sandbox's members.
#pragma once

#include <tuple>
#include <utility>

namespace hl {

namespace detail {
std::shared_ptr<worker> place(const asio::any_io_executor& ex);
inline constexpr const char* empty_sandbox_message =
    "the async_sandbox is empty (default-constructed or moved from), and has no executor";
}  // namespace detail

inline async_sandbox::async_sandbox(async_sandbox&& other) noexcept : state_(std::move(other.state_)), ex_(other.ex_) {}

inline async_sandbox& async_sandbox::operator=(async_sandbox&& other) noexcept {
    if (this != &other) {
        close();  // a sandbox this handle had is destroyed
        state_ = std::move(other.state_);
        ex_ = other.ex_;
    }
    return *this;
}

inline async_sandbox::~async_sandbox() { close(); }

inline async_sandbox::async_sandbox(executor_type ex) noexcept : ex_(std::move(ex)) {}

inline async_sandbox::async_sandbox(std::shared_ptr<detail::sandbox_state> state, executor_type ex) noexcept
    : state_(std::move(state)), ex_(std::move(ex)) {}

template <class Token>
auto async_sandbox::async_create(executor_type ex, std::filesystem::path guest, sandbox_config config,
                                 std::function<void(uninitialized_sandbox&)> setup, Token&& token) {
    return create_with(
        ex,
        [guest = std::move(guest), config, setup = std::move(setup)] {
            auto u = uninitialized_sandbox::from_file(guest, config);
            if (setup) setup(u);
            return std::move(u).evolve();
        },
        std::forward<Token>(token));
}

template <class Token>
auto async_sandbox::async_create_from(executor_type ex, std::shared_ptr<const snapshot> snap,
                                      std::function<void(multi_use_sandbox&)> bind, Token&& token) {
    return create_with(
        ex,
        [snap = std::move(snap), bind = std::move(bind)] {
            auto sb = multi_use_sandbox::from_snapshot(snap);
            if (bind) bind(sb);
            return sb;
        },
        std::forward<Token>(token));
}

template <class R, class... ArgsAndToken>
    requires detail::return_type<R>
auto async_sandbox::async_call(std::string_view name, ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, {}, std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class Rep, class Period, class... ArgsAndToken>
    requires detail::return_type<R>
auto async_sandbox::async_call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name,
                                   ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, call_limits{std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), {}},
                        std::forward<ArgsAndToken>(args_and_token)...);
}

template <class R, class... ArgsAndToken>
    requires detail::return_type<R>
auto async_sandbox::async_call_for(const call_limits& limits, std::string_view name, ArgsAndToken&&... args_and_token) {
    return call_with<R>(name, limits, std::forward<ArgsAndToken>(args_and_token)...);
}

template <class Token>
auto async_sandbox::async_snapshot(Token&& token) {
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

template <class Token>
auto async_sandbox::async_restore(std::shared_ptr<const snapshot> snap, Token&& token) {
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

inline hl::interrupt_handle async_sandbox::interrupt_handle() const {
    if (!state_) {
        throw error(errc::usage_error, "interrupt_handle() on an empty async_sandbox (default-constructed or moved from)");
    }
    return state_->interrupt_handle();
}

inline std::string async_sandbox::last_error() const { return state_ ? state_->last_error() : std::string(); }

inline void async_sandbox::close() noexcept {
    if (auto s = std::move(state_)) {
        try {
            s->close(detail::cover::of(ex_));
        } catch (...) {
            // Out of memory posting the destruction: the sandbox is left to the last reference.
        }
    }
}

template <class Make, class Token>
auto async_sandbox::create_with(executor_type ex, Make make, Token&& token) {
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
auto async_sandbox::call_with(std::string_view name, const call_limits& limits, ArgsAndToken&&... args_and_token) {
    return detail::with_token_last(
        [&](auto&& token, const auto&... args) {
            detail::call_context context;
            context.limits = limits;
            context.empty_message = detail::empty_sandbox_message;
            return detail::initiate_call<R>(state_, ex_, name, std::move(context),
                                            std::forward<decltype(token)>(token), args...);
        },
        std::forward<ArgsAndToken>(args_and_token)...);
}

}  // namespace hl
