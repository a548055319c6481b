// SPDX-License-Identifier: Apache-2.0
#include "hl/runtime/detail/cover.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <typeinfo>
#include <utility>

#include "hl/runtime/detail/worker.hpp"

namespace hl::detail {

namespace {

// The covers of one io_context: while any is held, one unit of outstanding work on it. Shared by
// its service and the covers, so that a cover let go after the io_context is gone finds it here
// and leaves the io_context alone.
struct ledger {
    std::mutex mutex;
    std::condition_variable released;
    std::size_t held = 0;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;  // while held > 0
    bool gone = false;  // the io_context is being destroyed: nothing may touch it any more

    void take(asio::io_context& io) {
        const std::lock_guard lock(mutex);
        if (held == 0 && !gone) work.emplace(io.get_executor());
        ++held;
    }
    void let_go() noexcept {
        const std::lock_guard lock(mutex);
        if (--held == 0) {
            work.reset();  // empty once gone
            released.notify_all();
        }
    }
};

// How long an io_context's destruction waits for the covers still held: a worker ends what it
// covers (destroys a sandbox, gives a pool's sandbox back, creates one) in well under this. One
// held up longer (a host function's capture slow to destroy) must not hang the application's
// shutdown for good.
constexpr auto longest_wait = std::chrono::seconds(1);

// Lives in the application's io_context, made by its first cover. Its shutdown, called by the
// io_context's destructor, comes before the scheduler's: services shut down in reverse order of
// creation, and the scheduler is the first.
class cover_service final : public asio::execution_context::service {
public:
    static asio::execution_context::id id;

    explicit cover_service(asio::execution_context& context)
        : asio::execution_context::service(context), ledger_(std::make_shared<ledger>()) {}

    const std::shared_ptr<ledger>& books() const noexcept { return ledger_; }

private:
    // After a stop(), an exception out of run() or a run_for(), run() did not wait for the
    // covers: the destruction does, before the scheduler's shutdown destroys what is queued
    // (unlocked: a worker posting meanwhile would race with it). A cover let go after the wait
    // leaves the io_context alone; the work it stood for is let go here, while it is alive.
    void shutdown() override {
        std::unique_lock lock(ledger_->mutex);
        ledger_->released.wait_for(lock, longest_wait, [this] { return ledger_->held == 0; });
        ledger_->gone = true;
        ledger_->work.reset();
    }

    std::shared_ptr<ledger> ledger_;
};

asio::execution_context::id cover_service::id;

// The io_context of `ex` if it is an io_context's executor, or a strand of one, that runs
// handlers on this thread now: of each, every variant of its properties (blocking, relationship,
// work). The type is compared first: any_executor::target() casts without checking (Asio 1.22).
template <std::uintptr_t... Bits>
asio::io_context* running_here(const asio::any_io_executor& ex, std::integer_sequence<std::uintptr_t, Bits...>) {
    using alloc = std::allocator<void>;
    const std::type_info& type = ex.target_type();
    asio::io_context* found = nullptr;
    const auto io = [&]<std::uintptr_t B>() {
        using executor = asio::io_context::basic_executor_type<alloc, B>;
        if (type != typeid(executor)) return false;
        const auto* e = ex.target<executor>();
        if (e->running_in_this_thread()) found = &e->context();
        return true;
    };
    const auto strand = [&]<std::uintptr_t B>() {
        using executor = asio::strand<asio::io_context::basic_executor_type<alloc, B>>;
        if (type != typeid(executor)) return false;
        const auto* e = ex.target<executor>();
        if (e->running_in_this_thread()) found = &e->get_inner_executor().context();
        return true;
    };
    static_cast<void>((io.template operator()<Bits>() || ...) || (strand.template operator()<Bits>() || ...));
    return found;
}

}  // namespace

// Counted from its construction (which fails as a whole if the count cannot be taken) to its
// destruction.
struct cover::hold {
    hold(std::shared_ptr<ledger> l, asio::io_context& io) : books(std::move(l)) { books->take(io); }
    hold(const hold&) = delete;
    hold& operator=(const hold&) = delete;
    ~hold() { books->let_go(); }
    std::shared_ptr<ledger> books;
};

cover cover::of(const asio::any_io_executor& ex) noexcept {
    // On a worker nothing of an application's io_context runs, and its io_context may be gone:
    // asking it whether it runs here would read it. (A worker's own executor is not covered.)
    if (!ex || worker::current() != nullptr) return {};
    try {
        auto* io = running_here(ex, std::make_integer_sequence<std::uintptr_t, 8>());
        if (io == nullptr) return {};
        return cover(std::make_shared<hold>(asio::use_service<cover_service>(*io).books(), *io));
    } catch (...) {
        return {};  // out of memory: the promise is not kept, nothing worse
    }
}

}  // namespace hl::detail
