// SPDX-License-Identifier: Apache-2.0
// Covers: what keeps the application's io_context from finishing while a worker still runs or
// destroys what the application gave the library (bind, host functions and their captures).
#pragma once

#include <asio/any_io_executor.hpp>

#include <memory>

namespace hl::detail {

/// Outstanding work on an application's io_context, held while a worker runs or destroys the
/// application's code, so that the io_context's run() returns only after. Where run() does not
/// wait for it (io_context::stop(), an exception out of run(), run_for()), the io_context's
/// destruction does, up to a second, and a cover let go after that leaves the io_context alone.
/// So held only by what runs on a worker: what waits in the io_context's queue is work of it
/// already, and the destruction waits before Asio destroys that queue. Copies share one
/// hold, let go with the last of them. Empty when nothing is covered.
class cover {
public:
    cover() = default;
    explicit operator bool() const noexcept { return hold_ != nullptr; }

    /// A cover of `ex`, taken only on a thread that runs `ex` (an io_context's executor, or a
    /// strand of one) now, where its io_context is known to be alive; elsewhere (on a worker, the
    /// application letting a handle go after its run() returned, an io_context nobody runs, an
    /// executor of another kind, a strand of an any_io_executor) an empty one. Off a worker it
    /// asks the io_context whether it runs here: that io_context must still exist.
    /// Work taken this way is passed on to what follows from it: see pool_core::cover_of().
    static cover of(const asio::any_io_executor& ex) noexcept;

private:
    struct hold;
    explicit cover(std::shared_ptr<hold> h) noexcept : hold_(std::move(h)) {}
    std::shared_ptr<hold> hold_;
};

}  // namespace hl::detail
