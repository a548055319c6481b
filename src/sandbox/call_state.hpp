// SPDX-License-Identifier: Apache-2.0
// One guest call from its start to its end: what must survive between two run()s of a guest_call.
// A synchronous call keeps one on its stack and runs it to its end in one go.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

#include "hl/call_limits.hpp"
#include "hl/host_function.hpp"
#include "hl/detail/recycled.hpp"
#include "hl/value.hpp"
#include "protocol/codec.hpp"

namespace hl::detail {

class sandbox_core;

/// Recycled: made and freed at call rate, on the thread that runs the call.
struct call_state : recycled {
    /// to_the_end: call() and initialisation; every host function runs through `invoke`.
    /// sliced: a guest_call; a host function with `start_async` pauses the call instead.
    enum class mode { to_the_end, sliced };
    enum class phase { ready, host_call, finished, failed };

    std::uint64_t op = 0;
    std::string name;  // for messages: the caller's view may be gone by the next run()
    value_type return_type = value_type::void_type;
    call_limits limits;         // the call's own, merged with the sandbox's defaults
    std::int64_t deadline = 0;  // monotonic_ns(); 0: none
    bool measure_cpu = false;   // read the thread's CPU clock around each run (a budget, or the config asks)
    call_usage used;            // this call's, so far (calls is 1 for a call, 0 for initialisation)
    std::int64_t started_at = 0;  // monotonic_ns() at the start, for metrics and traces; 0: neither
    bool traced = false;          // the sandbox's trace recorder was recording when the call started
    std::int64_t host_call_at = 0;  // monotonic_ns() when the guest stopped for an async host call (traced)
    mode how = mode::to_the_end;
    std::atomic<phase> at{phase::ready};
    std::thread::id thread;  // the one that started it, and runs it
    bool interrupted_at_end = false;
    bool result_taken = false;
    std::optional<return_value> result;
    /// How the call failed when run() ended it without an exception (phase::failed): a kill or the
    /// deadline, or, through guest_call::run_nothrow(), any failure. `failure_reason` is the message
    /// (what() without the error code's text).
    std::error_code failure;
    std::string failure_reason;

    /// The host call the guest waits for (phase::host_call). `call` views the guest's output
    /// buffer, which nothing writes until the answer is written into it by the next run().
    struct host_request {
        std::shared_ptr<const host_function> function;
        std::string name;
        protocol::call_view call;
    };
    host_request pending;
    /// The answer may come from any thread: it claims `answer` (none -> writing), fills it, and
    /// publishes it (ready, release); run() reads it after an acquire load.
    enum class answer_state { none, writing, ready };
    std::atomic<answer_state> answered{answer_state::none};
    host_function::outcome answer;

    sandbox_core* core = nullptr;
};

}  // namespace hl::detail
