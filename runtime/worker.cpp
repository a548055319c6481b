// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/worker.hpp"

#include <pthread.h>

#include <asio/execution/context.hpp>
#include <asio/query.hpp>
#include <string>

namespace hl::detail {
namespace {

thread_local worker* this_worker = nullptr;

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

}  // namespace

worker::worker(std::size_t index, std::chrono::nanoseconds slice)
    : index_(index), slice_(slice), guard_(io_.get_executor()) {
    asio::make_service<owner_service>(io_, this);
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
    for (;;) {
        try {
            io_.run();
            break;
        } catch (...) {
            // A handler of the application's threw on the worker: Asio's rule is that the exception
            // leaves run(); the worker carries on with the next handler rather than die.
        }
    }
    this_worker = nullptr;
    stopped_.store(true, std::memory_order_release);
}

void worker::shutdown() {
    guard_.reset();
    if (running_in_this_thread()) return;
    if (thread_.joinable()) thread_.join();
}

}  // namespace hl::detail
