// SPDX-License-Identifier: Apache-2.0
// Host functions written as coroutines. The guest's call waits on its vCPU thread while the
// coroutine runs on an executor the application chooses, so the event loop keeps serving others.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hl/sandbox.hpp"

namespace hl {

/// Registers `f`, a callable returning asio::awaitable<R>, as the host function `name`. Each guest
/// call co_spawns it on `ex`; an exception it throws becomes an error the guest receives. If the
/// guest call is killed or times out meanwhile, the coroutine gets a terminal Asio cancellation.
/// On an async_sandbox (or a pool's), the guest call waits without holding its worker: the worker
/// serves its other work, and the guest resumes when the coroutine completes. A synchronous
/// call() instead blocks its thread until then, so `ex` must then be run by another thread.
template <class Sandbox, class F>
void register_async_host_function(Sandbox& sandbox, std::string name, asio::any_io_executor ex, F f);

/// An async host function that sleeps `milliseconds` on an asio::steady_timer.
inline auto timer_host_function(asio::any_io_executor ex);

/// An async host function that returns the bytes of a regular file under `root`, read with
/// asio::random_access_file (io_uring). Paths are relative to `root` and the kernel resolves them
/// beneath it (openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): absolute paths, "..", symbolic
/// links that lead outside the root and /proc magic links are refused, as are FIFOs, devices,
/// directories and files larger than `max_bytes`. Symbolic links that stay inside the root are
/// followed. Needs Linux 5.6 or later: where openat2 is unavailable every call fails, saying so.
auto file_reader_host_function(asio::any_io_executor ex, std::filesystem::path root,
                               std::uint64_t max_bytes = 16 << 20)
    -> std::function<asio::awaitable<std::vector<std::uint8_t>>(std::string)>;

}  // namespace hl

#include "hl/runtime/impl/async_host_function.hpp"
