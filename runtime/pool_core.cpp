// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/pool_core.hpp"

#include <asio/post.hpp>

#include <algorithm>
#include <bit>

#include "hl/runtime/detail/initiate.hpp"

namespace hl::detail {

namespace {

// For a handler that runs on a worker: the pool's core, and work on the pool's executor covering
// what the handler does. The core goes first (members are destroyed in reverse order): the last
// reference to it destroys the application's bind.
struct covered_core {
    cover work;
    std::shared_ptr<pool_core> core;
};

}  // namespace

std::string abort_message(std::error_code ec) {
    if (ec == errc::pool_closed) return "the pool is closed: it hands out no more sandboxes";
    if (ec == errc::pool_busy) return "the pool's wait queue is full (pool_options::max_waiters): try again later";
    if (ec == errc::timed_out) return "no sandbox became free within pool_options::acquire_timeout";
    if (ec == errc::usage_error) return "the operation was made through a pool lease that has been released: it never ran";
    if (ec == asio::error::operation_aborted) return "the operation was cancelled (or its sandbox closed) before it ran";
    return ec.message();
}

pool_core::pool_core(asio::any_io_executor ex, std::shared_ptr<const snapshot> clean,
                     std::function<void(multi_use_sandbox&)> bind, pool_options options)
    : ex_(std::move(ex)), clean_(std::move(clean)), bind_(std::move(bind)), options_(options) {
    if (options_.call_limits.timeout.count() < 0 || options_.call_limits.cpu_time.count() < 0) {
        throw error(errc::usage_error, "pool_options::call_limits holds a negative duration; 0 means no limit");
    }
    if (options_.max_size == 0) options_.max_size = 1;
    if (options_.min_size > options_.max_size) options_.min_size = options_.max_size;
    runtime& rt = options_.runtime != nullptr ? *options_.runtime : runtime::default_runtime();
    for (std::size_t i = 0; i < rt.size(); ++i) workers_.push_back(rt.worker_at(i));
    idle_.resize(workers_.size());
    placed_.resize(workers_.size());
}

pool_core::~pool_core() {
    for (auto& list : idle_) {
        for (auto& s : list) drop(std::move(s));
    }
}

cover pool_core::cover_of(const cover& held) const noexcept { return held ? held : cover::of(ex_); }

void pool_core::drop(std::shared_ptr<sandbox_state> sandbox, const cover& held) {
    if (!sandbox) return;
    try {
        sandbox->close(cover_of(held));  // its host functions (from bind) go before run() returns
    } catch (...) {
        // Out of memory posting the destruction: the last reference destroys it.
    }
}

void pool_core::start(const cover& held) {
    const auto work = cover_of(held);
    std::lock_guard lock(mutex_);
    while (creating_ + idle_count_ < options_.min_size) create_one(work);
}

void pool_core::create_one(const cover& held) {
    ++creating_;
    // On the worker with the fewest of this pool's sandboxes.
    const auto least = std::min_element(placed_.begin(), placed_.end());
    const std::size_t index = static_cast<std::size_t>(least - placed_.begin());
    ++*least;
    auto state = std::make_shared<sandbox_state>(workers_[index]);
    // The creation counts as work of the pool's executor until it has completed: the application's
    // bind function never runs after that executor's run() returned, even for a pool destroyed
    // while it was growing, nor is it destroyed then.
    initiate_task<void(std::error_code)>(
        state, workers_[index]->executor(), "",
        [covered = covered_core{cover_of(held), shared_from_this()}, state](std::error_code ec) mutable {
            covered.core->created(std::move(state), ec, covered.work);
        },
        [snap = clean_, bind = bind_](sandbox_state& s, std::string& message) {
            const auto ec = guarded(s, 0, message, [&] {
                auto sb = multi_use_sandbox::from_snapshot(snap);
                if (bind) bind(sb);
                s.set_sandbox(std::move(sb));
            });
            return std::pair(ec, std::tuple<>());
        },
        // Never inline: the creation runs user code (bind), and the caller holds mutex_.
        [] { return std::tuple<>(); }, /*background=*/true);
}

void pool_core::created(std::shared_ptr<sandbox_state> sandbox, std::error_code ec, const cover& held) {
    std::list<waiting> unserved;
    std::unique_ptr<pool_waiter> next;
    {
        std::lock_guard lock(mutex_);
        --creating_;
        if (ec) {
            --placed_[sandbox->home().index()];
            ++counters_.failures;
            // Waiters beyond what the sandboxes that exist or are on their way can serve would
            // wait forever: they get the error.
            const std::size_t coming = idle_count_ + in_use_ + creating_;
            while (waiters_.size() > coming) unserved.splice(unserved.begin(), waiters_, std::prev(waiters_.end()));
            check_drained();
        } else if (closed_) {
            --placed_[sandbox->home().index()];
            check_drained();
        } else {
            next = hand_over_locked(sandbox);
        }
    }
    for (auto& w : unserved) {
        if (w.timer) w.timer->cancel();
        w.waiter->deliver(ec, nullptr);
    }
    if (next) return next->deliver({}, std::move(sandbox));
    drop(std::move(sandbox), held);  // null once it went idle
}

std::unique_ptr<pool_waiter> pool_core::hand_over_locked(std::shared_ptr<sandbox_state>& sandbox) {
    if (waiters_.empty()) {
        idle_[sandbox->home().index()].push_back(std::move(sandbox));
        ++idle_count_;
        check_drained();
        return nullptr;
    }
    auto next = std::move(waiters_.front().waiter);
    if (waiters_.front().timer) waiters_.front().timer->cancel();
    waiters_.pop_front();
    ++in_use_;
    ++counters_.acquired;
    return next;
}

std::shared_ptr<sandbox_state> pool_core::take_idle_locked() {
    if (idle_count_ == 0) return nullptr;
    // The calling thread's worker first: the call then runs right here.
    std::size_t index = idle_.size();
    if (const auto* self = worker::current()) {
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            if (workers_[i].get() == self && !idle_[i].empty()) index = i;
        }
    }
    if (index == idle_.size()) {
        index = static_cast<std::size_t>(
            std::max_element(idle_.begin(), idle_.end(), [](const auto& a, const auto& b) { return a.size() < b.size(); }) -
            idle_.begin());
    }
    auto sandbox = std::move(idle_[index].back());
    idle_[index].pop_back();
    --idle_count_;
    return sandbox;
}

void pool_core::acquire(std::unique_ptr<pool_waiter> w, const std::shared_ptr<task_cancellation>& task) {
    std::unique_lock lock(mutex_);
    if (closed_) {
        lock.unlock();
        return w->deliver(make_error_code(errc::pool_closed), nullptr);
    }
    if (waiters_.empty()) {
        if (auto sandbox = take_idle_locked()) {
            ++in_use_;
            ++counters_.acquired;
            lock.unlock();
            return w->deliver({}, std::move(sandbox));
        }
    }
    if (waiters_.size() >= options_.max_waiters) {
        lock.unlock();
        return w->deliver(make_error_code(errc::pool_busy), nullptr);
    }
    const std::uint64_t id = next_id_++;
    // Armed under mutex_, before the waiter is queued: no hand-over can come first.
    if (task && !task->arm([weak = weak_from_this(), id] {
            if (auto self = weak.lock()) self->cancel(id, asio::error::operation_aborted);
        })) {
        lock.unlock();
        return w->deliver(asio::error::operation_aborted, nullptr);
    }
    std::unique_ptr<asio::steady_timer> timer;
    if (options_.acquire_timeout.count() > 0) {
        timer = std::make_unique<asio::steady_timer>(ex_, options_.acquire_timeout);
        timer->async_wait([weak = weak_from_this(), id](std::error_code ec) {
            if (ec) return;  // cancelled: the waiter was served or withdrawn
            if (auto self = weak.lock()) self->cancel(id, make_error_code(errc::timed_out));
        });
    }
    w->immediate = false;
    waiters_.push_back({id, std::move(w), std::move(timer)});
    if (creating_ + idle_count_ + in_use_ < options_.max_size) create_one(cover::of(ex_));
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
    if (gone) gone->deliver(reason, nullptr);
}

void pool_core::release(std::shared_ptr<sandbox_state> sandbox, const cover& held) {
    const auto work = cover_of(held);
    std::unique_ptr<pool_waiter> next;
    // First: nothing the previous holder started, or still starts, runs on the sandbox any more.
    sandbox->new_epoch();
    {
        std::lock_guard lock(mutex_);
        std::erase_if(broken_, [](const std::weak_ptr<sandbox_state>& b) { return b.expired(); });
        const auto it = std::find_if(broken_.begin(), broken_.end(),
                                     [&sandbox](const auto& b) { return b.lock() == sandbox; });
        if (it != broken_.end() || closed_) {
            if (it != broken_.end()) {
                broken_.erase(it);  // its restore failed: dropped and replaced
                ++counters_.replacements;
            }
            --in_use_;
            --placed_[sandbox->home().index()];
            if (!closed_) create_one(work);
            check_drained();
        } else {
            // Before the hand-over: whatever the next holder does queues behind the restore.
            ++recycling_;
            initiate_task<void(std::error_code)>(
                sandbox, sandbox->home().executor(), "",
                // Covered as a creation is: restored() may create a replacement.
                [covered = covered_core{work, shared_from_this()}, sandbox](std::error_code ec) {
                    covered.core->restored(sandbox, ec, covered.work);
                },
                [snap = clean_](sandbox_state& s, std::string& message) {
                    const auto ec = guarded(s, s.epoch(), message, [&] { s.sandbox().restore(snap); });
                    return std::pair(ec, std::tuple<>());
                },
                [] { return std::tuple<>(); }, /*background=*/true);
            --in_use_;
            next = hand_over_locked(sandbox);
        }
    }
    if (next) return next->deliver({}, std::move(sandbox));
    drop(std::move(sandbox), work);  // null once it went idle
}

void pool_core::restored(const std::shared_ptr<sandbox_state>& sandbox, std::error_code ec, const cover& held) {
    std::shared_ptr<sandbox_state> doomed;
    {
        std::lock_guard lock(mutex_);
        --recycling_;
        if (!ec) {
            ++counters_.restores;
        } else if (ec != asio::error::operation_aborted) {
            auto& list = idle_[sandbox->home().index()];
            const auto it = std::find(list.begin(), list.end(), sandbox);
            if (it != list.end()) {
                doomed = std::move(*it);
                list.erase(it);
                --idle_count_;
                --placed_[sandbox->home().index()];
                ++counters_.replacements;
                if (!closed_) create_one(held);
            } else {
                broken_.push_back(sandbox);  // in use: its holder gets errc::poisoned until it lets go
            }
        }
        check_drained();
    }
    drop(std::move(doomed), held);
}

void pool_core::record_task(std::chrono::nanoseconds elapsed, const call_usage& used) noexcept {
    const auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(1, elapsed.count() / 1000));
    const std::size_t bucket = std::min<std::size_t>(std::bit_width(us) - 1, counters_.latency_us.size() - 1);
    std::lock_guard lock(mutex_);
    ++counters_.latency_us[bucket];
    counters_.usage += used;
}

pool_stats pool_core::stats() const {
    std::lock_guard lock(mutex_);
    pool_stats s = counters_;
    s.idle = idle_count_;
    s.in_use = in_use_;
    s.recycling = recycling_;
    s.waiters = waiters_.size();
    s.size = idle_count_ + in_use_ + creating_;
    return s;
}

void pool_core::close() {
    std::list<waiting> waiters;
    std::vector<std::shared_ptr<sandbox_state>> idle;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        waiters.swap(waiters_);
        for (std::size_t i = 0; i < idle_.size(); ++i) {
            placed_[i] -= idle_[i].size();
            for (auto& s : idle_[i]) idle.push_back(std::move(s));
            idle_[i].clear();
        }
        idle_count_ = 0;
        check_drained();
    }
    for (auto& w : waiters) {
        if (w.timer) w.timer->cancel();
        w.waiter->deliver(asio::error::operation_aborted, nullptr);
    }
    for (auto& s : idle) drop(std::move(s));
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
