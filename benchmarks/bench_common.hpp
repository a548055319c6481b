// SPDX-License-Identifier: Apache-2.0
// Shared by the benchmark files: Hyperlight's sandbox sizes and sandbox construction.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "hl/hl.hpp"

namespace hl::bench {

struct size_case {
    const char* name;
    std::uint64_t heap;
};

/// default, small (8 MiB heap), medium (64 MiB heap), large (256 MiB heap), as Hyperlight's suite.
inline constexpr size_case sizes[] = {
    {"default", 128 * 1024}, {"small", 8ull << 20}, {"medium", 64ull << 20}, {"large", 256ull << 20}};

/// The Linux-program (glibc) cases: the same call on simpleguest built with LIBC glibc. glibc's
/// malloc starts with a 1 MiB arena, so these sandboxes get a 16 MiB heap.
inline constexpr size_case glibc_size{"default_glibc", 16ull << 20};

inline hl::sandbox_config config_for(const size_case& s) {
    hl::sandbox_config c;
    c.heap_size = s.heap;
    return c;
}

inline hl::uninitialized_sandbox load(const size_case& s, const char* guest = HL_SIMPLEGUEST) {
    auto u = hl::uninitialized_sandbox::from_file(guest, config_for(s));
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return u;
}

inline hl::multi_use_sandbox make(const size_case& s, const char* guest = HL_SIMPLEGUEST) { return load(s, guest).evolve(); }

/// Times `f` alone (for benchmarks registered with UseManualTime).
template <class F>
double seconds(F&& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Registers `fn(state, args...)` under `name`, timed by the wall clock.
template <class F, class... A>
benchmark::internal::Benchmark* add(const std::string& name, F fn, A... args) {
    return benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { fn(st, args...); })->UseRealTime();
}

/// Registers `fn(state, args...)` under `name`, timed by what it reports with SetIterationTime().
template <class F, class... A>
benchmark::internal::Benchmark* add_manual(const std::string& name, F fn, A... args) {
    return benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { fn(st, args...); })->UseManualTime();
}

/// A latency case (see latency()) that went wrong: says so on stderr (`failure` names the case)
/// and in its `failures` counter, which every repetition sets (0 when it went right);
/// benchmarks_smoke fails on the message. Not SkipWithError(): Google Benchmark 1.7.1, Debian 12's,
/// reads an unset pointer when the first of several repetitions reported only as aggregates was
/// skipped, and crashes (google/benchmark#1406).
inline void latency_outcome(benchmark::State& state, const std::string& failure = {}) {
    if (!failure.empty()) std::fprintf(stderr, "benchmark failed: %s\n", failure.c_str());
    state.counters["failures"] = failure.empty() ? 0 : 1;
}

/// For latencies: one sample per repetition, reported as median and p99 (and mean, stddev).
inline benchmark::internal::Benchmark* latency(benchmark::internal::Benchmark* b, int samples = 200) {
    return b->Iterations(1)->Repetitions(samples)->ReportAggregatesOnly(true)->ComputeStatistics(
        "p99", [](const std::vector<double>& v) {
            std::vector<double> sorted(v);
            std::sort(sorted.begin(), sorted.end());
            return sorted[static_cast<std::size_t>(0.99 * static_cast<double>(sorted.size() - 1))];
        });
}

}  // namespace hl::bench
