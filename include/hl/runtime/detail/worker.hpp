// SPDX-License-Identifier: Apache-2.0
// One worker thread of an hl::runtime: an io_context run by one thread, on which sandboxes live.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <chrono>
#include <cstddef>
#include <optional>
#include <thread>

namespace hl::detail {

class worker : public std::enable_shared_from_this<worker> {
public:
    worker(std::size_t index, std::chrono::nanoseconds slice);
    std::size_t index() const noexcept { return index_; }
    /// shutdown(), then frees the io_context (handlers still queued are destroyed, not run).
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    asio::io_context& context() noexcept { return io_; }
    asio::io_context::executor_type executor() noexcept { return io_.get_executor(); }
    std::chrono::nanoseconds slice() const noexcept { return slice_; }

    /// The worker the calling thread is, or null.
    static worker* current() noexcept;
    bool running_in_this_thread() const noexcept { return current() == this; }
    /// The worker whose io_context `ex` submits to, or null.
    static worker* of(const asio::any_io_executor& ex) noexcept;

    /// Lets the thread end once no work is in flight (work counted by the io_context), and joins it.
    /// From the worker's own thread it only lets go: the thread ends after the handler returns.
    void shutdown();
    /// True once the thread has ended or is ending: work submitted now would never run.
    bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }

    /// Sandboxes living here, for placement.
    std::atomic<std::size_t> sandboxes{0};

private:
    void loop(std::size_t index);

    std::size_t index_;
    std::chrono::nanoseconds slice_;
    asio::io_context io_{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
    std::atomic<bool> stopped_{false};
    std::thread thread_;
};

}  // namespace hl::detail
