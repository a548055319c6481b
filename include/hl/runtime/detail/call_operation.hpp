// SPDX-License-Identifier: Apache-2.0
// A guest call as an operation on a sandbox's worker: run in slices, waiting for async host
// functions without blocking the worker.
#pragma once

#include <asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "hl/runtime/detail/completion.hpp"
#include "hl/runtime/detail/sandbox_state.hpp"
#include "hl/runtime/detail/task_cancellation.hpp"

namespace hl::detail {

class pool_core;

/// The part of a call that does not depend on its handler (call_operation.cpp).
class call_base : public sandbox_op {
public:
    void start(sandbox_state& state) final;
    void abort(std::error_code ec) noexcept final;

    /// After the call (successful or not), the sandbox goes back to `pool` (a pool task's call),
    /// which records the task's latency from `since`.
    void release_to(std::shared_ptr<pool_core> pool) noexcept { pool_ = std::move(pool); }
    /// Handed a sandbox, on the task's executor: from here on a worker runs the call and then the
    /// release, which comes after the completion (see pool_core::cover_of()); this covers both.
    /// (A task waiting for a sandbox holds none: nothing of it runs on a worker.)
    void cover_release() noexcept;
    /// The pool handed the task `sandbox`: it goes back even if the call never starts.
    void leased(std::shared_ptr<sandbox_state> sandbox) noexcept { leased_ = std::move(sandbox); }
    void count_latency_from(std::chrono::steady_clock::time_point since) noexcept { since_ = since; }
    /// Whose last_error() a failure goes to: the holder's epoch, known once a pool hands over.
    void set_epoch(std::uint64_t epoch) noexcept { epoch_ = epoch; }

protected:
    call_base(std::string_view name, value_type type, const call_limits& limits, std::uint64_t epoch)
        : name_(name), type_(type), limits_(limits), epoch_(epoch), queued_at_(std::chrono::steady_clock::now()) {
        cancellable = true;
    }
    /// Completes the handler and frees the operation.
    virtual void deliver(std::error_code ec, std::string message, return_value result) noexcept = 0;
    virtual std::span<const argument> arguments() const noexcept = 0;

private:
    struct host_wait;
    struct parking;
    void step();
    /// After a slice: the next one, once the worker has run what became ready, and, below a sliced
    /// share of 1, once it has nothing else to run or the wait is over (runtime_options).
    void yield();
    void wait_for_host();
    void answer(host_function::outcome outcome);
    void fail(const std::exception_ptr& e);
    void finish(std::error_code ec, std::string message, return_value result);

    std::string name_;
    value_type type_;
    call_limits limits_;
    std::uint64_t epoch_;  // whose last_error() a failure goes to
    std::chrono::steady_clock::time_point queued_at_;  // the initiation, for traces
    std::shared_ptr<sandbox_state> state_;  // from start() on
    guest_call call_;
    std::shared_ptr<host_wait> wait_;  // while an async host function runs
    std::unique_ptr<asio::steady_timer> resume_;  // resumes the guest after a slice; made at the first
    std::shared_ptr<parking> parking_;  // while the call waits for its next slice; made at the first
    std::shared_ptr<pool_core> pool_;
    cover pool_work_;  // see cover_release()
    std::shared_ptr<sandbox_state> leased_;  // a pool task's sandbox, until the call starts on it
    std::chrono::steady_clock::time_point since_{};
};

/// Arguments copied for a call that may run after its initiating function returned, without a
/// heap allocation beyond what the values themselves need (a long string, a byte vector).
template <std::size_t N>
class owned_arguments {
public:
    template <class... A>
    explicit owned_arguments(const A&... a) : values_{own(to_argument(a))...} {
        for (std::size_t i = 0; i < N; ++i) views_[i] = view(values_[i]);
    }
    owned_arguments(owned_arguments&& other) noexcept : values_(std::move(other.values_)) {
        for (std::size_t i = 0; i < N; ++i) views_[i] = view(values_[i]);
    }
    owned_arguments(const owned_arguments&) = delete;
    owned_arguments& operator=(const owned_arguments&) = delete;
    owned_arguments& operator=(owned_arguments&&) = delete;

    std::span<const argument> views() const noexcept { return std::span<const argument>(views_.data(), N); }

private:
    static return_value own(const argument& a) {
        return std::visit(
            [](const auto& x) -> return_value {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, std::string_view>) return std::string(x);
                else if constexpr (std::is_same_v<T, std::span<const std::uint8_t>>) return std::vector<std::uint8_t>(x.begin(), x.end());
                else return x;
            },
            a);
    }
    static argument view(const return_value& v) {
        return std::visit(
            [](const auto& x) -> argument {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, std::string>) return std::string_view(x);
                else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) return std::span<const std::uint8_t>(x);
                else if constexpr (std::is_same_v<T, std::monostate>) return argument{};
                else return x;
            },
            v);
    }
    std::array<return_value, N> values_;
    std::array<argument, N + 1> views_{};
};

template <class Handler, class R, std::size_t N>
class call_operation final : public call_base {
public:
    call_operation(completion<Handler> done, std::string_view name, owned_arguments<N> args, const call_limits& limits,
                   std::uint64_t epoch)
        : call_base(name, value_traits<R>::type, limits, epoch), done_(std::move(done)), args_(std::move(args)) {}

private:
    std::span<const argument> arguments() const noexcept override { return args_.views(); }
    void deliver(std::error_code ec, std::string message, return_value result) noexcept override {
        auto done = std::move(done_);
        delete this;  // before the upcall, as Asio frees an operation's memory
        try {
            if constexpr (std::is_void_v<R>) {
                done.complete(ec, std::move(message));
            } else {
                R value{};
                if (!ec) value = std::get<R>(std::move(result));
                done.complete(ec, std::move(message), std::move(value));
            }
        } catch (...) {
            // Out of memory posting the completion: nothing more can be done for this caller.
        }
    }

    completion<Handler> done_;
    owned_arguments<N> args_;
};

/// Any other operation (creation, snapshot, restore): `fn(state, message)` runs on the worker and
/// returns the error code and a tuple of the completion's values; `aborted()` gives the values
/// of a completion without running.
template <class Handler, class Fn, class Aborted>
class task_operation final : public sandbox_op {
public:
    task_operation(completion<Handler> done, Fn fn, Aborted aborted)
        : done_(std::move(done)), fn_(std::move(fn)), aborted_(std::move(aborted)) {}

    void start(sandbox_state& state) override {
        std::string message;
        auto outcome = fn_(state, message);  // not a structured binding: clang 14 cannot capture one
        const std::error_code ec = outcome.first;
        auto values = std::move(outcome.second);
        state.finished(*this);
        auto done = std::move(done_);
        delete this;
        std::apply([&](auto&&... v) { done.complete(ec, std::move(message), std::move(v)...); }, std::move(values));
    }
    void abort(std::error_code ec) noexcept override {
        auto done = std::move(done_);
        auto values = aborted_();
        delete this;
        try {
            std::apply([&](auto&&... v) { done.complete(ec, std::string(), std::move(v)...); }, std::move(values));
        } catch (...) {
        }
    }

private:
    completion<Handler> done_;
    Fn fn_;
    Aborted aborted_;
};

}  // namespace hl::detail
