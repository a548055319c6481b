// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/runtime.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#include "hl/error.hpp"
#include "hl/runtime/detail/worker.hpp"

namespace hl {

runtime::runtime(runtime_options options) : slice_(options.slice) {
    if (!(options.sliced_share > 0 && options.sliced_share <= 1)) {  // NaN too
        throw error(errc::usage_error, "runtime_options::sliced_share is " + std::to_string(options.sliced_share) +
                                           "; it must be in (0, 1]");
    }
    if (options.call_limits.timeout.count() < 0 || options.call_limits.cpu_time.count() < 0) {
        throw error(errc::usage_error, "runtime_options::call_limits holds a negative duration; 0 means no limit");
    }
    std::size_t count = options.workers;
    if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
    workers_.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        workers_.push_back(
            std::make_shared<detail::worker>(i, options.slice, options.sliced_share, options.call_limits));
    }
}

runtime::~runtime() {
    for (auto& w : workers_) w->shutdown();
}

runtime& runtime::default_runtime() {
    // Never destroyed: sandboxes in static objects may outlive any destruction order, and the
    // process's exit ends its threads.
    static runtime* const instance = new runtime();
    return *instance;
}

runtime::executor_type runtime::get_executor(std::size_t index) const {
    if (index >= workers_.size()) {
        throw error(errc::usage_error, "runtime::get_executor: worker " + std::to_string(index) + " of " +
                                           std::to_string(workers_.size()) + " does not exist");
    }
    return workers_[index]->executor();
}

runtime::executor_type runtime::get_executor() { return worker_for_placement()->executor(); }

bool runtime::running_in_this_thread() const noexcept {
    const auto* self = detail::worker::current();
    return std::any_of(workers_.begin(), workers_.end(), [self](const auto& w) { return w.get() == self; });
}

const std::shared_ptr<detail::worker>& runtime::worker_for_placement() {
    if (const auto* self = detail::worker::current()) {
        for (const auto& w : workers_) {
            if (w.get() == self) return w;
        }
    }
    const std::size_t i = std::atomic_ref<std::size_t>(next_).fetch_add(1, std::memory_order_relaxed);
    return workers_[i % workers_.size()];
}

namespace detail {

std::shared_ptr<worker> place(const asio::any_io_executor& ex) {
    if (auto* w = worker::of(ex)) return w->shared_from_this();
    return runtime::default_runtime().worker_for_placement();
}

}  // namespace detail

const std::shared_ptr<detail::worker>& runtime::worker_at(std::size_t index) const { return workers_.at(index); }

}  // namespace hl
