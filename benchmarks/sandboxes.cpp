// SPDX-License-Identifier: Apache-2.0
#include <optional>

#include "bench_common.hpp"

namespace {

using hl::bench::size_case;

// The *_and_drop cases include destruction; the others time creation alone.
void create_uninitialized(benchmark::State& state, size_case s) {
    for (auto _ : state) {
        std::optional<hl::uninitialized_sandbox> u;
        state.SetIterationTime(hl::bench::seconds([&] { u.emplace(hl::bench::load(s)); }));
    }
}

void create_uninitialized_and_drop(benchmark::State& state, size_case s) {
    for (auto _ : state) benchmark::DoNotOptimize(hl::bench::load(s));
}

void create_initialized(benchmark::State& state, size_case s) {
    for (auto _ : state) {
        std::optional<hl::multi_use_sandbox> sb;
        state.SetIterationTime(hl::bench::seconds([&] { sb.emplace(hl::bench::make(s)); }));
    }
}

void create_initialized_and_drop(benchmark::State& state, size_case s) {
    for (auto _ : state) benchmark::DoNotOptimize(hl::bench::make(s));
}

// A Linux program (simpleguest on glibc, c_simpleguest on musl) with the Linux-program heap.
void create_initialized_linux(benchmark::State& state, const char* guest) {
    for (auto _ : state) {
        std::optional<hl::multi_use_sandbox> sb;
        state.SetIterationTime(
            hl::bench::seconds([&] { sb.emplace(hl::bench::make(hl::bench::glibc_size, guest)); }));
    }
}

void create_from_snapshot_linux(benchmark::State& state, const char* guest) {
    const auto snap = hl::bench::make(hl::bench::glibc_size, guest).snapshot();
    for (auto _ : state) {
        std::optional<hl::multi_use_sandbox> sb;
        state.SetIterationTime(hl::bench::seconds([&] { sb.emplace(hl::multi_use_sandbox::from_snapshot(snap)); }));
    }
}

void create_from_snapshot(benchmark::State& state, size_case s) {
    const auto snap = hl::bench::make(s).snapshot();
    for (auto _ : state) {
        std::optional<hl::multi_use_sandbox> sb;
        state.SetIterationTime(hl::bench::seconds([&] { sb.emplace(hl::multi_use_sandbox::from_snapshot(snap)); }));
    }
}

const int registered = [] {
    for (const auto& s : hl::bench::sizes) {
        const std::string n = s.name;
        hl::bench::add_manual("sandboxes/create_uninitialized/" + n, create_uninitialized, s);
        hl::bench::add("sandboxes/create_uninitialized_and_drop/" + n, create_uninitialized_and_drop, s);
        hl::bench::add_manual("sandboxes/create_initialized/" + n, create_initialized, s);
        hl::bench::add("sandboxes/create_initialized_and_drop/" + n, create_initialized_and_drop, s);
        hl::bench::add_manual("sandboxes/create_from_snapshot/" + n, create_from_snapshot, s);
    }
    hl::bench::add_manual("sandboxes/create_initialized/glibc", create_initialized_linux, HL_SIMPLEGUEST_GLIBC);
    hl::bench::add_manual("sandboxes/create_from_snapshot/glibc", create_from_snapshot_linux, HL_SIMPLEGUEST_GLIBC);
#ifdef HL_C_SIMPLEGUEST_MUSL
    // c_simpleguest on musl, against the same source freestanding with the same heap.
    hl::bench::add_manual("sandboxes/create_initialized/c_freestanding", create_initialized_linux, HL_C_SIMPLEGUEST);
    hl::bench::add_manual("sandboxes/create_from_snapshot/c_freestanding", create_from_snapshot_linux,
                          HL_C_SIMPLEGUEST);
    hl::bench::add_manual("sandboxes/create_initialized/musl", create_initialized_linux, HL_C_SIMPLEGUEST_MUSL);
    hl::bench::add_manual("sandboxes/create_from_snapshot/musl", create_from_snapshot_linux, HL_C_SIMPLEGUEST_MUSL);
#endif
    return 0;
}();

}  // namespace
