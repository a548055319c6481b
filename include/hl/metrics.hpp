// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "hl/call_limits.hpp"
#include "hl/error.hpp"

namespace hl {

/// Counters and latency histograms that sandboxes record into: give one to any number of sandboxes
/// (sandbox_config::metrics; the sandboxes made from their snapshots, a pool's among them, record
/// into it too) and read it from any thread. Recording is a handful of relaxed atomic additions per
/// call and per restore; nothing is allocated and no lock is taken.
///
/// What it counts: guest calls by outcome (success, or each hl::errc; initialisation is not a
/// call), their wall-clock duration and, where measured, CPU time (see call_usage::cpu_time), the
/// VM exits, host calls and system calls they made, and restores with the pages each copied.
class metrics {
public:
    /// Histogram bucket i counts values in (2^i, 2^(i+1)] microseconds, as Prometheus's `le`
    /// bounds read them (bucket 0 also holds everything up to 1 us; the last, everything above).
    static constexpr std::size_t buckets = 28;
    /// Outcome 0 is success; outcome n > 0 is hl::errc n; the last counts errors of other
    /// categories (std::bad_alloc's, the system's).
    static constexpr std::size_t outcomes = static_cast<std::size_t>(errc::cpu_budget_exceeded) + 2;

    struct histogram {
        std::array<std::uint64_t, buckets> counts{};
        std::uint64_t count = 0;
        std::chrono::nanoseconds sum{};
    };
    /// A copy of the values at one moment (each value read atomically, not all at once).
    struct values {
        std::array<std::uint64_t, outcomes> calls{};
        histogram duration;
        histogram cpu_time;  // only calls whose CPU time was measured
        std::uint64_t vm_exits = 0, host_calls = 0, system_calls = 0;
        std::uint64_t restores = 0, restored_pages = 0;

        std::uint64_t calls_total() const noexcept;
        /// Calls that ended with `code` (a default error_code: success).
        std::uint64_t calls_with(std::error_code code) const noexcept;
    };

    metrics() = default;
    metrics(const metrics&) = delete;
    metrics& operator=(const metrics&) = delete;

    /// A call ended with `outcome` (empty: success) after `duration`, having cost `used`.
    void record_call(std::error_code outcome, std::chrono::nanoseconds duration, const call_usage& used) noexcept;
    /// A call was refused before it ran (errc::poisoned, argument_too_large): an outcome, no duration.
    void record_refused(std::error_code outcome) noexcept;
    /// A restore copied (or zeroed) `pages` pages.
    void record_restore(std::uint64_t pages) noexcept;

    values read() const noexcept;

    /// The values in the Prometheus text exposition format (version 0.0.4), every name starting
    /// with `prefix` and an underscore: `<prefix>_calls_total{outcome="..."}` (outcome: "ok" or the
    /// errc's name), `<prefix>_call_duration_seconds` and `<prefix>_call_cpu_seconds`
    /// (histograms), `<prefix>_vm_exits_total`, `<prefix>_host_calls_total`,
    /// `<prefix>_system_calls_total`, `<prefix>_restores_total`, `<prefix>_restored_pages_total`.
    /// Throws hl::error (errc::usage_error) for a prefix that is not 1 to 64 characters of a
    /// Prometheus metric name.
    std::string prometheus_text(std::string_view prefix = "hyperlight") const;

    /// The name an outcome has in prometheus_text(): "ok", "timed_out", ..., "other".
    static std::string_view outcome_name(std::size_t outcome) noexcept;

private:
    struct atomic_histogram {
        std::array<std::atomic<std::uint64_t>, buckets> counts{};
        std::atomic<std::uint64_t> count{0};
        std::atomic<std::int64_t> sum_ns{0};
        void add(std::chrono::nanoseconds value) noexcept;
        histogram read() const noexcept;
    };

    std::array<std::atomic<std::uint64_t>, outcomes> calls_{};
    atomic_histogram duration_;
    atomic_histogram cpu_time_;
    std::atomic<std::uint64_t> vm_exits_{0}, host_calls_{0}, system_calls_{0};
    std::atomic<std::uint64_t> restores_{0}, restored_pages_{0};
};

}  // namespace hl
