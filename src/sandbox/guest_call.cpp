// SPDX-License-Identifier: Apache-2.0
#include "hl/guest_call.hpp"

#include <chrono>
#include <thread>

#include "sandbox/call_state.hpp"
#include "sandbox/interrupt.hpp"
#include "sandbox/sandbox_core.hpp"
#include "sandbox/thread_timer.hpp"
#include "util/strfmt.hpp"

namespace hl {
namespace {

using phase = detail::call_state::phase;
using answer_state = detail::call_state::answer_state;

bool is_over(const detail::call_state& c) noexcept {
    const phase p = c.at.load();
    return p == phase::finished || p == phase::failed;
}

// Holds the sandbox for one run() (see driving_thread).
class run_claim {
public:
    explicit run_claim(detail::sandbox_core& core) : core_(core) {
        switch (core_.driver().try_take()) {
        case detail::driving_thread::claim::taken: return;
        case detail::driving_thread::claim::held_by_this_thread:
            throw error(errc::usage_error, "cannot run a guest_call from inside one of its sandbox's host functions or "
                                           "handlers");
        case detail::driving_thread::claim::held_by_another_thread:
            throw error(errc::usage_error, "cannot run a guest_call while another thread uses its sandbox");
        }
    }
    ~run_claim() {
        const auto abandoned = core_.take_abandoned();  // null: the guest_call frees an abandoned core
        core_.driver().release();
    }
    run_claim(const run_claim&) = delete;
    run_claim& operator=(const run_claim&) = delete;

private:
    detail::sandbox_core& core_;
};

}  // namespace

guest_call::guest_call(std::unique_ptr<detail::call_state> state) noexcept : state_(std::move(state)) {}

guest_call::guest_call() noexcept = default;
guest_call::guest_call(guest_call&& other) noexcept = default;

guest_call& guest_call::operator=(guest_call&& other) noexcept {
    if (this != &other) {
        reset();
        state_ = std::move(other.state_);
    }
    return *this;
}

guest_call::~guest_call() { reset(); }

void guest_call::reset() noexcept {
    if (!state_) return;
    detail::sandbox_core* core = state_->core;
    if (!is_over(*state_)) {
        // Abandoned: poison under the claim. Other threads hold it only for a moment now (every
        // member of the sandbox fails at once while this call is open).
        // (Held by this thread: inside one of the sandbox's callbacks, where its contract forbids
        // destroying the call that runs.)
        auto claim = core->driver().try_take();
        while (claim == detail::driving_thread::claim::held_by_another_thread) {
            std::this_thread::sleep_for(std::chrono::microseconds(20));
            claim = core->driver().try_take();
        }
        core->abandon(*state_);
        if (claim == detail::driving_thread::claim::taken) core->driver().release();
    }
    state_.reset();
    detail::sandbox_core::detach_call(core);
}

detail::call_state& guest_call::usable(const char* what) const {
    if (!state_) {
        throw error(errc::usage_error,
                    util::strfmt("cannot %s: this guest_call is empty (moved from, or never started)", what));
    }
    return *state_;
}

guest_call::status guest_call::run(std::chrono::nanoseconds slice) {
    const status s = run_nothrow_or_throw(slice, false);
    if (s == status::failed) throw detail::sandbox_core::failure_of(*state_);
    return s;
}

guest_call::status guest_call::run_nothrow(std::chrono::nanoseconds slice) { return run_nothrow_or_throw(slice, true); }

guest_call::status guest_call::run_nothrow_or_throw(std::chrono::nanoseconds slice, bool catch_failures) {
    detail::call_state& c = usable("run it");
    if (is_over(c)) throw error(errc::usage_error, "cannot run a guest_call that has finished");
    if (c.thread != std::this_thread::get_id()) {
        throw error(errc::usage_error, "cannot run a guest_call from another thread than the one that started it");
    }
    if (c.at.load() == phase::host_call && c.answered.load(std::memory_order_acquire) != answer_state::ready) {
        throw error(errc::usage_error,
                    util::strfmt("cannot run the call to '%s': it waits for host function '%s'; answer with "
                                 "complete_host_call() or fail_host_call() first",
                                 c.name.c_str(), util::name_for_message(c.pending.name).c_str()));
    }
    const run_claim claim(*c.core);
    if (!catch_failures) return c.core->run(c, slice);
    try {
        return c.core->run(c, slice);
    } catch (const std::system_error& e) {  // hl::error too
        if (!is_over(c)) throw;  // the call is as it was (a timer the kernel refused)
        // what() of a system_error is its message, then ": " and the code's text; keep the message,
        // so that failure() gives back the same what().
        std::string_view what = e.what();
        const std::string suffix = ": " + e.code().message();
        if (what.size() >= suffix.size() && what.substr(what.size() - suffix.size()) == suffix) {
            what.remove_suffix(suffix.size());
        }
        c.failure = e.code();
        c.failure_reason = std::string(what);
        return status::failed;
    }
}

error guest_call::failure() const {
    const detail::call_state& c = usable("read its failure");
    if (c.at.load() != phase::failed || !c.failure) {
        throw hl::error(errc::usage_error, "the guest_call has no failure: it has not ended with status::failed");
    }
    return detail::sandbox_core::failure_of(c);
}

return_value guest_call::take_result() {
    detail::call_state& c = usable("take its result");
    if (c.at.load() != phase::finished || c.result_taken) {
        throw error(errc::usage_error, c.result_taken ? "the guest_call's result was taken already"
                                                      : "the guest_call has no result: it has not finished, or failed");
    }
    c.result_taken = true;
    return std::move(*c.result);
}

guest_call::host_request guest_call::pending_host_call() const {
    const detail::call_state& c = usable("read its host call");
    if (c.at.load() != phase::host_call) {
        throw error(errc::usage_error, "the guest_call does not wait for a host call");
    }
    return {c.pending.function.get(), c.pending.name, c.pending.call.arguments};
}

void guest_call::complete_host_call(return_value result) {
    detail::call_state& c = usable("answer its host call");
    auto expected = answer_state::none;
    if (c.at.load() != phase::host_call || !c.answered.compare_exchange_strong(expected, answer_state::writing)) {
        throw error(errc::usage_error, "the guest_call does not wait for a host call, or it was answered already");
    }
    c.answer.value = std::move(result);
    c.answer.failure.reset();
    c.answered.store(answer_state::ready, std::memory_order_release);
}

void guest_call::fail_host_call(std::string message) {
    detail::call_state& c = usable("answer its host call");
    auto expected = answer_state::none;
    if (c.at.load() != phase::host_call || !c.answered.compare_exchange_strong(expected, answer_state::writing)) {
        throw error(errc::usage_error, "the guest_call does not wait for a host call, or it was answered already");
    }
    c.answer.value = std::monostate{};
    c.answer.failure = std::move(message);
    c.answered.store(answer_state::ready, std::memory_order_release);
}

bool guest_call::interrupted() const noexcept {
    if (!state_) return false;
    const detail::call_state& c = *state_;
    if (is_over(c)) return c.interrupted_at_end;
    return c.core->interrupt()->cancel.load() || (c.deadline != 0 && detail::monotonic_ns() >= c.deadline);
}

std::optional<std::chrono::steady_clock::time_point> guest_call::deadline() const noexcept {
    if (!state_ || state_->deadline == 0) return std::nullopt;
    // monotonic_ns() reads CLOCK_MONOTONIC, steady_clock's clock.
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(state_->deadline));
}

call_usage guest_call::usage() const { return usable("read its usage").used; }

hl::call_limits guest_call::limits() const { return usable("read its limits").limits; }

void guest_call::trace_queued(std::chrono::steady_clock::time_point since) const noexcept {
    if (!state_ || !state_->traced || is_over(*state_)) return;
    // steady_clock is CLOCK_MONOTONIC, the trace's clock.
    const auto start = std::chrono::duration_cast<std::chrono::nanoseconds>(since.time_since_epoch()).count();
    state_->core->trace("queued", state_->name, {}, start, false, state_->started_at);
}

void guest_call::set_interrupt_listener(std::function<void()> f) {
    if (!state_ || is_over(*state_)) return;
    state_->core->interrupt()->set_listener(std::move(f));
}

bool guest_call::done() const noexcept { return !state_ || is_over(*state_); }

void guest_call::dedicate_this_thread(bool on) noexcept { detail::thread_timer::set_dedicated(on); }

}  // namespace hl
