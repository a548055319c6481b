// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/pool_core.hpp"

#include <asio/post.hpp>

#include <algorithm>
#include <bit>

namespace hl::detail {

pool_core::pool_core(asio::any_io_executor ex, std::shared_ptr<const snapshot> clean,
                     std::function<void(multi_use_sandbox&)> bind, pool_options options)
    : ex_(std::move(ex)), clean_(std::move(clean)), bind_(std::move(bind)), options_(options), wake_timer_(ex_) {
    if (options_.max_size == 0) options_.max_size = 1;
    if (options_.min_size > options_.max_size) options_.min_size = options_.max_size;
}

void pool_core::start() {
    std::lock_guard lock(mutex_);
    while (creating_ + idle_.size() < options_.min_size) create_one();
}

void pool_core::create_one() {
    ++creating_;
    async_sandbox::async_create_from(ex_, clean_, bind_,
                                     [self = shared_from_this()](std::error_code ec, async_sandbox sandbox) {
                                         if (ec) return self->creation_failed(ec);
                                         self->arrived(std::move(sandbox), &pool_core::creating_);
                                     });
}

void pool_core::creation_failed(std::error_code ec) {
    std::list<waiting> unserved;
    {
        std::lock_guard lock(mutex_);
        --creating_;
        ++counters_.failures;
        // Waiters beyond what the sandboxes that exist or are on their way can serve would wait
        // forever: they get the error.
        const std::size_t coming = idle_.size() + in_use_ + creating_;
        while (waiters_.size() > coming) {
            unserved.splice(unserved.begin(), waiters_, std::prev(waiters_.end()));
        }
        check_drained();
    }
    for (auto& w : unserved) {
        if (w.timer) w.timer->cancel();
        w.waiter->deliver(ec, std::nullopt);
    }
}

void pool_core::acquire(std::unique_ptr<pool_waiter> w, const std::shared_ptr<task_cancellation>& task) {
    std::unique_lock lock(mutex_);
    if (closed_) {
        lock.unlock();
        w->deliver(make_error_code(errc::pool_closed), std::nullopt);
        return;
    }
    if (!idle_.empty() && waiters_.empty()) {
        auto sandbox = std::move(idle_.back());
        idle_.pop_back();
        ++in_use_;
        ++counters_.acquired;
        lock.unlock();
        w->deliver({}, std::move(sandbox));
        return;
    }
    if (waiters_.size() >= options_.max_waiters) {
        lock.unlock();
        w->deliver(make_error_code(errc::pool_busy), std::nullopt);
        return;
    }
    const std::uint64_t id = next_id_++;
    // Armed under mutex_, before the waiter is queued: no hand-over can come first.
    if (task && !task->arm([weak = weak_from_this(), id] {
            if (auto self = weak.lock()) self->cancel(id, asio::error::operation_aborted);
        })) {
        lock.unlock();
        w->deliver(asio::error::operation_aborted, std::nullopt);
        return;
    }
    std::unique_ptr<asio::steady_timer> timer;
    if (options_.acquire_timeout.count() > 0) {
        timer = std::make_unique<asio::steady_timer>(ex_, options_.acquire_timeout);
        timer->async_wait([weak = weak_from_this(), id](std::error_code ec) {
            if (ec) return;  // cancelled: the waiter was served or withdrawn
            if (auto self = weak.lock()) self->cancel(id, make_error_code(errc::timed_out));
        });
    }
    waiters_.push_back({id, std::move(w), std::move(timer)});
    if (creating_ + idle_.size() + in_use_ < options_.max_size) create_one();
}

void pool_core::cancel(std::uint64_t id, std::error_code reason) {
    std::unique_ptr<pool_waiter> gone;
    {
        std::lock_guard lock(mutex_);
        for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
            if (it->id != id) continue;
            gone = std::move(it->waiter);
            if (it->timer) it->timer->cancel();
            waiters_.erase(it);
            break;
        }
    }
    if (gone) gone->deliver(reason, std::nullopt);
}

void pool_core::arrived(async_sandbox sandbox, std::size_t pool_core::*was_counted_in) {
    std::unique_ptr<pool_waiter> next;
    {
        std::lock_guard lock(mutex_);
        --(this->*was_counted_in);  // in the same critical section as the hand-off: never uncounted
        if (closed_) {
            check_drained();
            return;  // the sandbox is dropped
        }
        if (waiters_.empty()) {
            idle_.push_back(std::move(sandbox));
            check_drained();
            return;
        }
        next = std::move(waiters_.front().waiter);
        if (waiters_.front().timer) waiters_.front().timer->cancel();
        waiters_.pop_front();
        ++in_use_;
        ++counters_.acquired;
    }
    next->deliver({}, std::move(sandbox));
}

void pool_core::release(async_sandbox sandbox) {
    const async_core* which = sandbox.core_.get();
    {
        std::lock_guard lock(mutex_);
        std::erase_if(broken_, [](const std::weak_ptr<async_core>& b) { return b.expired(); });
        const auto it = std::find_if(broken_.begin(), broken_.end(), [which](const auto& b) { return b.lock().get() == which; });
        if (it != broken_.end()) {
            broken_.erase(it);  // its restore failed: dropped here, on the holder's thread, and replaced
            --in_use_;
            ++counters_.replacements;
            if (!closed_) create_one();
            check_drained();
            return;
        }
        // Queued before the hand-off, so whatever the next holder does runs after it; and before
        // the sandbox joins deferred_, so that wake_deferred() never finds its queue still empty.
        ++recycling_;
        sandbox.async_restore_deferred(
            clean_, [self = shared_from_this(), weak = std::weak_ptr<async_core>(sandbox.core_)](std::error_code ec) {
                self->restored(weak, ec);
            });
        deferred_.push_back(sandbox.core_);
        if (!wake_armed_) {
            // Restores that no next task wakes within this time are woken here, so they still run
            // off every task's path when the pool is quiet, and drain() and run() can finish.
            wake_armed_ = true;
            wake_timer_.expires_after(std::chrono::microseconds(500));
            wake_timer_.async_wait([weak = weak_from_this()](std::error_code) {
                if (auto self = weak.lock()) self->wake_deferred();
            });
        }
    }
    arrived(std::move(sandbox), &pool_core::in_use_);
}

void pool_core::wake_deferred() {
    std::vector<std::weak_ptr<async_core>> due;
    {
        std::lock_guard lock(mutex_);
        wake_armed_ = false;
        due.swap(deferred_);
    }
    for (auto& weak : due) {
        if (auto core = weak.lock()) core->wake();  // a no-op when the restore already ran
    }
}

void pool_core::restored(const std::weak_ptr<async_core>& which, std::error_code ec) {
    std::optional<async_sandbox> doomed;  // dropped outside the lock
    std::lock_guard lock(mutex_);
    --recycling_;
    if (!ec) {
        ++counters_.restores;
    } else if (ec != asio::error::operation_aborted && !which.expired()) {  // aborted: dropped already
        const auto it = std::find_if(idle_.begin(), idle_.end(),
                                     [&which](const async_sandbox& s) { return s.core_ == which.lock(); });
        if (it != idle_.end()) {
            doomed = std::move(*it);
            idle_.erase(it);
            ++counters_.replacements;
            if (!closed_) create_one();
        } else {
            broken_.push_back(which);  // in use: its holder gets errc::poisoned until it lets go
        }
    }
    check_drained();
}

void pool_core::record_latency(std::chrono::nanoseconds elapsed) {
    const auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(1, elapsed.count() / 1000));
    const std::size_t bucket = std::min<std::size_t>(std::bit_width(us) - 1, counters_.latency_us.size() - 1);
    std::lock_guard lock(mutex_);
    ++counters_.latency_us[bucket];
}

pool_stats pool_core::stats() const {
    std::lock_guard lock(mutex_);
    pool_stats s = counters_;
    s.idle = idle_.size();
    s.in_use = in_use_;
    s.recycling = recycling_;
    s.waiters = waiters_.size();
    s.size = idle_.size() + in_use_ + creating_;
    return s;
}

void pool_core::close() {
    std::list<waiting> waiters;
    std::vector<async_sandbox> idle;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        waiters.swap(waiters_);
        idle.swap(idle_);
        check_drained();
    }
    for (auto& w : waiters) {
        if (w.timer) w.timer->cancel();
        w.waiter->deliver(asio::error::operation_aborted, std::nullopt);
    }
}

void pool_core::when_drained(std::function<void()> done) {
    std::lock_guard lock(mutex_);
    drained_.push_back(std::move(done));
    check_drained();
}

void pool_core::check_drained() {
    if (in_use_ + recycling_ + creating_ != 0 || drained_.empty()) return;
    for (auto& f : drained_) asio::post(ex_, std::move(f));
    drained_.clear();
}

}  // namespace hl::detail
