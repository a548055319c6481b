// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/sandbox_state.hpp"

#include <asio/error.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <utility>

namespace hl::detail {
namespace {

// How deep this thread is inside sandbox operations: an operation submitted from inside another
// (a host function calling a second sandbox) is posted rather than started on top of it.
thread_local int operation_depth = 0;

std::atomic<std::uint64_t> last_id{0};

}  // namespace

operation_scope::operation_scope() noexcept { ++operation_depth; }
operation_scope::~operation_scope() { --operation_depth; }

std::uint64_t sandbox_state::next_id() noexcept { return last_id.fetch_add(1, std::memory_order_relaxed) + 1; }

sandbox_state::sandbox_state(std::shared_ptr<worker> home) : home_(std::move(home)) {
    home_->sandboxes.fetch_add(1, std::memory_order_relaxed);
}

sandbox_state::~sandbox_state() {
    home_->sandboxes.fetch_sub(1, std::memory_order_relaxed);
    // Normally destroyed on the worker by close(); here only when the worker is gone or close()
    // never ran (a failed creation), and then nothing runs on the sandbox.
}

void sandbox_state::submit(sandbox_op* op, bool may_start_inline) {
    bool start_now = false, post = false, cancelled = false;
    {
        std::lock_guard lock(mutex_);
        if (home_->stopped()) {
            cancelled = true;
        } else {
            queue_.push_back(op);
            if (const auto it = std::find(cancelled_early_.begin(), cancelled_early_.end(), op->id);
                it != cancelled_early_.end()) {
                cancelled_early_.erase(it);
                queue_.pop_back();
                cancelled = true;
            } else if (current_ == nullptr && !pumping_ && !pump_posted_) {
                if (may_start_inline && !op->background && operation_depth == 0 && home_->running_in_this_thread()) {
                    start_now = true;
                } else {
                    pump_posted_ = true;
                    post = true;
                }
            }
        }
    }
    if (cancelled) return op->abort(asio::error::operation_aborted);
    if (start_now) return pump();
    if (post) {
        home_->post([self = shared_from_this()] {
            {
                std::lock_guard lock(self->mutex_);
                self->pump_posted_ = false;
                if (self->pumping_) return;
            }
            self->pump();
        });
    }
}

void sandbox_state::pump() {
    const operation_scope inside;
    bool first = true;
    for (;;) {
        sandbox_op* op = nullptr;
        bool stale = false;
        bool destroy = false;
        bool repost = false;
        cover work;
        {
            std::lock_guard lock(mutex_);
            if (current_ != nullptr) {  // suspended: its finished() goes on from there
                pumping_ = false;
                return;
            }
            if (queue_.empty()) {
                pumping_ = false;
                destroy = closed_;
                if (destroy) work = std::move(closing_work_);
            } else if (!first) {
                // One operation per turn: what the worker was given meanwhile (what the operation
                // just completed, other sandboxes, timers) runs before this sandbox's next one, so a
                // queue refilled as fast as it drains cannot hold the worker, and the pool's
                // restore stays off the request's path. A pump already queued will go on.
                pumping_ = false;
                repost = !pump_posted_;
                pump_posted_ = true;
            } else {
                op = queue_.front();
                queue_.pop_front();
                pumping_ = true;
                if (op->holder && *op->holder != epoch_) {
                    stale = true;
                } else {
                    current_ = op;
                    current_cancellable_ = op->cancellable;
                }
            }
        }
        if (destroy) {
            sandbox_.reset();  // nothing is under way and nothing can be queued any more
            return;
        }
        if (repost) {
            home_->post([self = shared_from_this()] {
                {
                    std::lock_guard lock(self->mutex_);
                    self->pump_posted_ = false;
                    if (self->pumping_) return;
                }
                self->pump();
            });
            return;
        }
        if (op == nullptr) return;
        first = false;
        if (stale) {
            op->abort(make_error_code(errc::usage_error));
            continue;
        }
        op->start(*this);
    }
}

void sandbox_state::finished(const sandbox_op& op) {
    bool resume = false;
    {
        std::lock_guard lock(mutex_);
        if (current_ != &op) return;
        current_ = nullptr;
        // A kill armed for this call must not hit the next one.
        if (current_cancellable_ && handle_) handle_->disarm();
        current_cancellable_ = false;
        resume = !pumping_;
        if (resume) pumping_ = true;
    }
    if (!resume) return;
    // Later than start(): from a resumption on the worker. Go on with what is queued.
    home_->post([self = shared_from_this()] { self->pump(); });
}

void sandbox_state::cancel(std::uint64_t id) {
    sandbox_op* withdrawn = nullptr;
    {
        std::lock_guard lock(mutex_);
        const auto it = std::find_if(queue_.begin(), queue_.end(), [id](const sandbox_op* op) { return op->id == id; });
        if (it != queue_.end()) {
            withdrawn = *it;
            queue_.erase(it);
        } else if (current_ != nullptr && current_->id == id) {
            // Between its start and its guest there is no call to kill yet: the next one to
            // start is armed instead, and finished() disarms it.
            if (current_cancellable_) kill_current_locked();
            return;
        } else {
            // Not queued yet (submit() comes after the slot was connected), or over already.
            cancelled_early_.push_back(id);
            if (cancelled_early_.size() > 64) cancelled_early_.erase(cancelled_early_.begin());
            return;
        }
    }
    withdrawn->abort(asio::error::operation_aborted);
}

void sandbox_state::kill_current_locked() {
    if (handle_) handle_->kill_current_or_next();
}

void sandbox_state::close(cover work) {
    std::vector<std::pair<sandbox_op*, std::error_code>> aborted;
    bool post = false;
    {
        std::lock_guard lock(mutex_);
        if (closed_) return;
        closed_ = true;
        closing_work_ = std::move(work);
        // A released lease's operation says so, however the sandbox went.
        for (auto* op : queue_) {
            aborted.emplace_back(op, op->holder && *op->holder != epoch_ ? make_error_code(errc::usage_error)
                                                                         : std::error_code(asio::error::operation_aborted));
        }
        queue_.clear();
        if (current_ != nullptr && current_cancellable_) kill_current_locked();
        if (current_ == nullptr && !pumping_ && !pump_posted_) {
            pump_posted_ = true;
            post = true;
        }
    }
    for (auto& [op, ec] : aborted) op->abort(ec);
    if (!post) return;
    if (home_->stopped()) {
        sandbox_.reset();  // no thread runs it any more
        std::lock_guard lock(mutex_);
        closing_work_ = {};
        return;
    }
    home_->post([self = shared_from_this()] {
        {
            std::lock_guard lock(self->mutex_);
            self->pump_posted_ = false;
            if (self->pumping_) return;
        }
        self->pump();
    });
}

multi_use_sandbox& sandbox_state::sandbox() {
    if (!sandbox_) throw error(errc::usage_error, "the async sandbox has no sandbox: its creation failed");
    return *sandbox_;
}

void sandbox_state::set_sandbox(multi_use_sandbox sandbox) {
    sandbox_.emplace(std::move(sandbox));
    std::lock_guard lock(mutex_);
    handle_.emplace(sandbox_->interrupt_handle());
}

hl::interrupt_handle sandbox_state::interrupt_handle() const {
    std::lock_guard lock(mutex_);
    if (!handle_) throw error(errc::usage_error, "the async sandbox has no sandbox: its creation failed");
    return *handle_;
}

std::uint64_t sandbox_state::epoch() const {
    std::lock_guard lock(mutex_);
    return epoch_;
}

void sandbox_state::new_epoch() {
    std::lock_guard lock(mutex_);
    ++epoch_;
    last_error_.clear();
    if (current_ != nullptr && current_cancellable_) kill_current_locked();
}

void sandbox_state::set_last_error(std::uint64_t epoch, std::string message) {
    std::lock_guard lock(mutex_);
    if (epoch == epoch_) last_error_ = std::move(message);
}

std::string sandbox_state::last_error() const {
    std::lock_guard lock(mutex_);
    return last_error_;
}

}  // namespace hl::detail
