// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace hl {

/// Records what guest calls do, as timed events, for a slow request to be looked at in Perfetto or
/// chrome://tracing (chrome_json()). Give one to sandboxes (sandbox_config::trace; the sandboxes made
/// from their snapshots record into it too) and start() it when a trace is wanted: while it does
/// not record, a sandbox pays one relaxed atomic load per event it would have recorded.
///
/// Events, each with its sandbox (the track it is drawn on), the OS thread and its timestamps:
/// - "queued": an async call from its initiation to its start on the sandbox's worker;
/// - "call <name>": a guest call from its start to its end, with its outcome;
/// - "run": each stretch the vCPU thread runs the call (a slice, or the whole call);
/// - "host_call <name>": a host function the guest called; an asynchronous one from the end of the
///   run that stopped for it to the start of the run that answers it;
/// - "system_call <number>": a Linux system call served for the guest;
/// - "restore": a snapshot restore, with the pages it copied.
///
/// Thread-safe. Recording takes a lock and allocates a little per event; it stops by itself at the
/// first event past `max_events` (dropped() then says 1: events were lost from there on).
class trace_recorder {
public:
    struct event {
        std::string name;
        std::string detail;          // outcome, page count, ...; may be empty
        std::int64_t start_ns = 0;   // CLOCK_MONOTONIC
        std::int64_t duration_ns = 0;
        std::uint64_t sandbox = 0;   // a process-wide sandbox id
        std::uint64_t thread = 0;    // the OS thread id
    };

    explicit trace_recorder(std::size_t max_events = 1 << 16) : max_events_(max_events) {}
    trace_recorder(const trace_recorder&) = delete;
    trace_recorder& operator=(const trace_recorder&) = delete;

    /// Drops what was recorded and records from now on: until stop(), or until `calls` guest calls
    /// have ended (0: no such limit).
    void start(std::uint64_t calls = 0);
    void stop() noexcept { recording_.store(false, std::memory_order_relaxed); }
    bool recording() const noexcept { return recording_.load(std::memory_order_relaxed); }

    std::vector<event> events() const;
    std::uint64_t dropped() const noexcept;

    /// The events in the Chrome trace-event format (a JSON object with "traceEvents"), one track per
    /// sandbox, timestamps in microseconds from the first event.
    std::string chrome_json() const;

    /// For the library: records `e` if recording; `ends_call`: a guest call is over (for start()'s
    /// `calls`).
    void record(event e, bool ends_call = false);

private:
    const std::size_t max_events_;
    std::atomic<bool> recording_{false};
    mutable std::mutex mutex_;
    std::vector<event> events_;  // under mutex_
    std::uint64_t dropped_ = 0;  // under mutex_
    std::uint64_t calls_left_ = 0;  // under mutex_; 0: no limit
};

}  // namespace hl
