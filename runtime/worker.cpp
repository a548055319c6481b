// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/worker.hpp"

#include <pthread.h>

#include <asio/execution/context.hpp>
#include <asio/query.hpp>
#include <asio/steady_timer.hpp>
#include <algorithm>
#include <string>

#include "hl/guest_call.hpp"

namespace hl::detail {
namespace {

thread_local worker* this_worker = nullptr;

std::atomic<int> spinners{0};  // workers spinning right now, across all runtimes
const int max_spinners = std::max(1, static_cast<int>(std::thread::hardware_concurrency() / 2));

// Marks a worker's io_context, so that of() finds the worker from any executor of it.
class owner_service : public asio::execution_context::service {
public:
    using key_type = owner_service;
    static inline asio::execution_context::id id;
    owner_service(asio::execution_context& context, worker* w) : service(context), owner(w) {}
    explicit owner_service(asio::execution_context& context) : service(context), owner(nullptr) {}
    worker* const owner;

private:
    void shutdown() override {}
};

// slice × (1 / share − 1), at most a day (a tiny share means: only when the worker is idle).
std::chrono::nanoseconds wait_for_share(std::chrono::nanoseconds slice, double share) {
    constexpr double day = 86'400e9;
    const double wait = static_cast<double>(slice.count()) * (1 / share - 1);
    return std::chrono::nanoseconds(static_cast<std::int64_t>(std::clamp(wait, 0.0, day)));
}

}  // namespace

worker::worker(std::size_t index, std::chrono::nanoseconds slice, double sliced_share, const call_limits& limits)
    : index_(index),
      limits_(limits),
      slice_(slice),
      sliced_wait_(wait_for_share(slice, sliced_share)),
      guard_(io_.get_executor()) {
    asio::make_service<owner_service>(io_, this);
    // The reactor and the timer service now, while descriptors can be had: Asio makes them at the
    // first timer, and a call's first slice end (or host call) at the process's descriptor limit
    // would otherwise fail where nothing can report it.
    { const asio::steady_timer first(io_); }
    thread_ = std::thread([this, index] { loop(index); });
}

worker::~worker() { shutdown(); }

worker* worker::current() noexcept { return this_worker; }

worker* worker::of(const asio::any_io_executor& ex) noexcept {
    if (!ex) return nullptr;
    auto& context = asio::query(ex, asio::execution::context);
    if (!asio::has_service<owner_service>(context)) return nullptr;
    return asio::use_service<owner_service>(context).owner;
}

void worker::loop(std::size_t index) {
    const std::string name = "hl-worker-" + std::to_string(index);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());  // for top -H, perf and debuggers
    this_worker = this;
    // Calls come back to back here: no timer system calls around each one (see the contract).
    guest_call::dedicate_this_thread(true);
    for (;;) {
        try {
            // Work that comes while the worker spins idle (a call made from another thread, a
            // pool hand-over) is taken without the futex wake-up a sleeping thread needs, which
            // costs 30-40 us on virtualized hosts.
            if (io_.poll() > 0) continue;
            if (io_.stopped()) break;
            // Nothing else to run: a long call's next slice (its wake-up is a handler, run next).
            if (wake_idle_waiter()) continue;
            const auto seen = inbound_.load(std::memory_order_acquire);
            const auto idle_since = std::chrono::steady_clock::now();
            if (spin(seen, idle_since)) continue;
            io_.run_one();
            // Woken by a post: had the spin lasted until it came, it would have caught it. (Not
            // until run_one() returned: that includes the wake-up and the handler itself.)
            if (inbound_.load(std::memory_order_acquire) != seen) {
                const std::chrono::steady_clock::time_point posted(
                    std::chrono::steady_clock::duration(last_post_.load(std::memory_order_relaxed)));
                adapt_spin(posted - idle_since);
            }
            if (io_.stopped()) break;
        } catch (...) {
            // A handler of the application's threw on the worker: Asio's rule is that the exception
            // leaves run(); the worker carries on with the next handler rather than die.
        }
    }
    this_worker = nullptr;
    stopped_.store(true, std::memory_order_release);
}

bool worker::wake_idle_waiter() {
    while (!idle_waiters_.empty()) {
        auto w = idle_waiters_.front().lock();
        idle_waiters_.pop_front();
        if (w) {
            w->wake();
            return true;
        }
    }
    return false;
}

void worker::stop_waiting_for_idle(const idle_waiter* w) noexcept {
    std::erase_if(idle_waiters_, [w](const std::weak_ptr<idle_waiter>& x) {
        const auto live = x.lock();
        return !live || live.get() == w;
    });
}

bool worker::spin(std::uint64_t seen, std::chrono::steady_clock::time_point idle_since) {
    if (spin_budget_.count() == 0) return false;
    // Half the cores at most: a spinning worker holds a core the application's threads may need.
    if (spinners.fetch_add(1, std::memory_order_relaxed) >= max_spinners) {
        spinners.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    const auto until = idle_since + spin_budget_;
    for (unsigned i = 1;; ++i) {
        if (inbound_.load(std::memory_order_acquire) != seen) {
            spinners.fetch_sub(1, std::memory_order_relaxed);
            adapt_spin(std::chrono::steady_clock::now() - idle_since);
            return true;
        }
        __builtin_ia32_pause();
        if (i % 16 != 0) continue;  // the clock costs more than a pause
        if (std::chrono::steady_clock::now() >= until) break;
        if (i % 256 == 0) {
            // Work that did not come through post() (a completion, a co_spawn or a post of the
            // application's), and timers: a poll now and then, without holding a spinner's place.
            spinners.fetch_sub(1, std::memory_order_relaxed);
            if (io_.poll() > 0) return true;
            if (spinners.fetch_add(1, std::memory_order_relaxed) >= max_spinners) {
                spinners.fetch_sub(1, std::memory_order_relaxed);
                return false;
            }
        }
    }
    spinners.fetch_sub(1, std::memory_order_relaxed);
    return false;
}

void worker::adapt_spin(std::chrono::nanoseconds gap) {
    // Work that came within the longest spin would have been caught by one: spin longer next time
    // (from 4 us when spinning had stopped). Work that came later made any spin a waste of a core:
    // spin half as long, down to not at all.
    using std::chrono::microseconds;
    constexpr std::chrono::nanoseconds max_spin = microseconds(50);
    if (gap <= max_spin) {
        spin_budget_ = std::min(max_spin, std::max<std::chrono::nanoseconds>(spin_budget_ * 2, microseconds(4)));
    } else {
        spin_budget_ /= 2;
        if (spin_budget_ < microseconds(1)) spin_budget_ = {};
    }
}

void worker::shutdown() {
    guard_.reset();
    if (running_in_this_thread()) return;
    if (thread_.joinable()) thread_.join();
}

}  // namespace hl::detail
