// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/async_core.hpp"

#include <thread>

namespace hl::detail {

std::shared_ptr<async_core> async_core::create() {
    return std::shared_ptr<async_core>(new async_core(), [](async_core* core) noexcept {
        // Destroying joins the vCPU thread. Not on that thread itself, and not while a call runs: it
        // may be waiting for an async host function whose coroutine needs this very thread (the
        // last owner is often an event loop's thread), and killing the call does not end that wait.
        if (core->worker_.thread_id() != std::this_thread::get_id() && !core->busy()) {
            delete core;
            return;
        }
        try {
            std::thread([core] { delete core; }).detach();  // joins the vCPU thread once this job returns
        } catch (...) {
            // No thread to spare: the sandbox is leaked, which is safe, rather than destroyed while it runs.
        }
    });
}

async_core::async_core() {
    worker_.set_on_exit([this] { sandbox_.reset(); });  // destroyed on the thread it lived on
}

async_core::~async_core() {
    worker_.close();  // first, so that nothing queued starts once the running call is killed
    {
        std::lock_guard lock(run_lock_);
        if (running_ != nullptr && handle_) handle_->kill_current_or_next();
    }
    worker_.stop();
}

void async_core::submit(const std::shared_ptr<op_state>& op, std::unique_ptr<worker_job> job, bool wake) {
    bool cancelled_before = false;
    worker_.push(
        std::move(job),
        [&](vcpu_worker::ticket t) {
            if (!op) return;
            op->ticket = t;
            op->in_queue = true;
            cancelled_before = op->cancel_early;
        },
        wake);
    if (cancelled_before) cancel(op);  // it is queued now: withdrawn, or killed if already running
}

void async_core::cancel(const std::shared_ptr<op_state>& op) {
    if (auto job = worker_.withdraw([&op](vcpu_worker::ticket& t) {
            if (op->phase.load() != op_state::queued) return false;
            if (!op->in_queue) {  // submit() has not queued it yet: it will call back once it has
                op->cancel_early = true;
                return false;
            }
            t = op->ticket;
            return true;
        })) {
        op->phase = op_state::done;
        job->abort();
        return;
    }
    // Between begin() and the guest actually running there is no call to kill yet: arm the next
    // one instead. end() disarms, under the same lock, so a later operation is never hit.
    std::lock_guard lock(run_lock_);
    if (running_ == op.get() && handle_) handle_->kill_current_or_next();
}

void async_core::create(const std::function<multi_use_sandbox()>& make) {
    sandbox_.emplace(make());
    std::lock_guard lock(run_lock_);
    handle_.emplace(sandbox_->interrupt_handle());
}

multi_use_sandbox& async_core::sandbox() {
    if (!sandbox_) throw error(errc::usage_error, "the async sandbox has no sandbox: its creation failed");
    return *sandbox_;
}

bool async_core::begin(op_state* op, std::optional<std::uint64_t> holder) {
    std::lock_guard lock(run_lock_);
    if (holder && *holder != epoch_) return false;
    running_ = op;
    return true;
}

bool async_core::busy() const {
    std::lock_guard lock(run_lock_);
    return running_ != nullptr;
}

void async_core::end(op_state* op) {
    std::lock_guard lock(run_lock_);
    if (running_ == op) running_ = nullptr;
    if (!op) return;  // restore, snapshot: cancel() never arms a kill for these, so leave any alone
    op->phase = op_state::done;
    if (handle_) handle_->disarm();  // a kill armed for this operation must not hit the next one
}

hl::interrupt_handle async_core::interrupt_handle() const {
    std::lock_guard lock(run_lock_);
    if (!handle_) throw error(errc::usage_error, "the async sandbox has no sandbox: its creation failed");
    return *handle_;
}

std::uint64_t async_core::epoch() const {
    std::lock_guard lock(error_lock_);
    return epoch_;
}

void async_core::new_epoch() {
    std::lock_guard run(run_lock_);
    {
        std::lock_guard lock(error_lock_);
        ++epoch_;
        last_error_.clear();
    }
    // As in cancel(): a call between begin() and its guest is stopped as it enters, and end()
    // disarms what this armed, so nothing of the new holder's is hit.
    if (running_ != nullptr && handle_) handle_->kill_current_or_next();
}

void async_core::set_last_error(std::uint64_t epoch, std::string message) {
    std::lock_guard lock(error_lock_);
    if (epoch == epoch_) last_error_ = std::move(message);
}

std::string async_core::last_error() const {
    std::lock_guard lock(error_lock_);
    return last_error_;
}

}  // namespace hl::detail
