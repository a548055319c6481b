// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/call_operation.hpp"

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "hl/runtime/detail/pool_core.hpp"
#include "hl/runtime/detail/worker.hpp"

namespace hl::detail {

// An async host function under way. Shared with its completion and the call's interrupt
// listener, which may outlive the wait; `call` is null once the wait is over.
struct call_base::host_wait {
    explicit host_wait(asio::io_context& io) : deadline(io), work(io.get_executor()) {}
    call_base* call = nullptr;
    std::function<void()> stop;  // asks the host function to end early
    bool stop_sent = false;
    asio::steady_timer deadline;
    asio::executor_work_guard<asio::io_context::executor_type> work;  // the worker waits for the answer

    void request_stop() {
        if (call == nullptr || stop_sent) return;
        stop_sent = true;
        if (stop) stop();
    }
};

// A call between slices waiting for its worker to go idle; `call` is null while it does not
// wait. The worker and the call's interrupt listener hold it weakly.
struct call_base::parking final : idle_waiter {
    call_base* call = nullptr;
    void wake() override {
        if (call != nullptr) call->resume_->cancel();  // its handler resumes the call
    }
};

void call_base::abort(std::error_code ec) noexcept {
    std::string message;
    try {
        message = abort_message(ec);
    } catch (...) {
    }
    const auto work = std::move(pool_work_);  // before the pool: let go after it
    auto pool = std::move(pool_);
    auto leased = std::move(leased_);
    deliver(ec, std::move(message), {});  // frees this
    if (pool && leased) {
        try {
            pool->release(std::move(leased), work);
        } catch (...) {
            // Out of memory queueing the restore or a replacement: the sandbox is not reused.
        }
    }
}

// A pool task gives its sandbox back after its completion is on its way, so that the completion
// runs first; the release may still run the application's code (bind, for a replacement) or drop
// the last pool_core and what the application gave it. The cover taken when the task got its
// sandbox covers that: the pool's run() does not return before the release is over.
void call_base::cover_release() noexcept {
    if (pool_ && !pool_work_) pool_work_ = cover::of(pool_->executor());
}

void call_base::start(sandbox_state& state) {
    state_ = state.shared_from_this();
    leased_.reset();
    try {
        call_ = state.sandbox().start_call(name_, type_, arguments(), limits_.or_else(state.home().limits()));
    } catch (...) {
        return fail(std::current_exception());
    }
    call_.trace_queued(queued_at_);
    step();
}

void call_base::step() {
    // Resumed from the worker's queue too: the guest's host functions run inside this operation.
    const operation_scope inside;
    const auto slice = state_->home().slice();
    guest_call::status status;
    try {
        status = call_.run_nothrow(slice);
    } catch (...) {
        return fail(std::current_exception());
    }
    switch (status) {
    case guest_call::status::failed: {
        // A kill or a deadline: no exception on this path, which is the interrupt latency.
        std::error_code ec;
        std::string message;
        try {
            const auto e = call_.failure();
            ec = e.code();
            message = e.what();
        } catch (...) {
            return fail(std::current_exception());
        }
        return finish(ec, std::move(message), {});
    }
    case guest_call::status::finished: {
        return_value result;
        try {
            result = call_.take_result();
        } catch (...) {
            return fail(std::current_exception());
        }
        return finish({}, {}, std::move(result));
    }
    case guest_call::status::sliced: return yield();
    case guest_call::status::host_call: return wait_for_host();
    }
}

void call_base::yield() {
    // The worker serves what came meanwhile, then the guest goes on, in two steps:
    // - Through the reactor first. A post alone would run ahead of the timers and sockets that
    //   became ready during the slice (the reactor is polled once per turn of the queue, after
    //   what is queued). Due timers complete in order of expiry, so every timer that fell due
    //   during the slice goes first (due now or later, not at time_point::min(), which would sort
    //   it ahead of all of them).
    // - Then a post, behind what those handlers queued. A call they make on another sandbox of
    //   this worker runs inline but posts its completion; without this step the completion
    //   would wait for the whole next slice of this guest.
    // Below a sliced share of 1 the timer is due later, and the worker wakes it early when it has
    // nothing else to run (wake() cancels it), as a kill does, and the deadline bounds it.
    // Nothing here may throw past this operation: the worker would drop the exception, and the
    // call with it.
    auto& home = state_->home();
    try {
        if (!resume_) resume_ = std::make_unique<asio::steady_timer>(home.context());
        if (!parking_) parking_ = std::make_shared<parking>();
        const auto now = std::chrono::steady_clock::now();
        auto due = now + home.sliced_wait();
        if (const auto deadline = call_.deadline(); deadline && *deadline < due) due = std::max(now, *deadline);
        resume_->expires_at(due);
        const bool parked = due > now;
        if (parked) {  // before the wait, which must be the last thing here that can throw
            home.wait_for_idle(parking_);
            parking_->call = this;
            call_.set_interrupt_listener([weak = std::weak_ptr<parking>(parking_), ex = home.executor()] {
                try {
                    asio::post(ex, [weak] {
                        if (auto p = weak.lock()) p->wake();
                    });
                } catch (...) {  // out of memory: the wait ends by itself, at most sliced_wait() later
                }
            });
        }
        resume_->async_wait([this](std::error_code) {
            if (parking_->call != nullptr) {
                parking_->call = nullptr;
                call_.set_interrupt_listener({});
                state_->home().stop_waiting_for_idle(parking_.get());
            }
            try {
                asio::post(state_->home().executor(), [this] { step(); });
            } catch (...) {
                fail(std::current_exception());
            }
        });
        if (parked && call_.interrupted()) parking_->wake();  // killed before the listener was there
    } catch (...) {
        return fail(std::current_exception());
    }
}

void call_base::wait_for_host() {
    auto& home = state_->home();
    wait_ = std::make_shared<host_wait>(home.context());
    wait_->call = this;
    const auto request = call_.pending_host_call();
    std::weak_ptr<host_wait> weak = wait_;
    // A kill or deadline stops the host function; the call then ends when it has.
    call_.set_interrupt_listener([weak, ex = home.executor()] {
        asio::post(ex, [weak] {
            if (auto w = weak.lock()) w->request_stop();
        });
    });
    if (const auto deadline = call_.deadline()) {
        wait_->deadline.expires_at(*deadline);
        wait_->deadline.async_wait([weak](std::error_code ec) {
            if (ec) return;
            if (auto w = weak.lock()) w->request_stop();
        });
    }
    try {
        wait_->stop = request.function->start_async(
            request.arguments, [wait = wait_, ex = home.executor()](host_function::outcome outcome) {
                asio::post(ex, [wait, outcome = std::move(outcome)]() mutable {
                    if (wait->call != nullptr) wait->call->answer(std::move(outcome));
                });
            });
    } catch (const std::exception& e) {
        return answer({{}, std::string("the host function could not start: ") + e.what()});
    }
    if (call_.interrupted()) wait_->request_stop();
}

void call_base::answer(host_function::outcome outcome) {
    auto wait = std::move(wait_);
    wait->call = nullptr;
    wait->deadline.cancel();
    call_.set_interrupt_listener({});
    try {
        if (outcome.failure) {
            call_.fail_host_call(std::move(*outcome.failure));
        } else {
            call_.complete_host_call(std::move(outcome.value));
        }
    } catch (...) {
        return fail(std::current_exception());
    }
    step();
}

void call_base::fail(const std::exception_ptr& e) {
    std::error_code ec;
    std::string message;
    try {
        std::rethrow_exception(e);
    } catch (const std::system_error& x) {  // hl::error too
        ec = x.code();
        message = x.what();
    } catch (const std::exception& x) {
        ec = make_error_code(errc::vm_error);
        message = x.what();
    } catch (...) {
        ec = make_error_code(errc::vm_error);
        message = "a non-standard exception";
    }
    finish(ec, std::move(message), {});
}

void call_base::finish(std::error_code ec, std::string message, return_value result) {
    const call_usage used = call_ ? call_.usage() : call_usage{};  // a call that never started cost nothing
    call_ = guest_call();
    resume_.reset();
    parking_.reset();
    auto state = std::move(state_);
    if (ec) state->set_last_error(epoch_, message);
    const auto work = std::move(pool_work_);  // before the pool: let go after it
    auto pool = std::move(pool_);
    state->finished(*this);
    // Before the completion: a task that has completed is in the pool's stats.
    if (pool && since_ != std::chrono::steady_clock::time_point{}) {
        pool->record_task(std::chrono::steady_clock::now() - since_, used);
    }
    deliver(ec, std::move(message), std::move(result));  // frees this
    if (pool) {
        try {
            pool->release(std::move(state), work);
        } catch (...) {
            // Out of memory queueing the restore or a replacement: the sandbox is not reused.
        }
    }
}

}  // namespace hl::detail
