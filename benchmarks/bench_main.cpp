// SPDX-License-Identifier: Apache-2.0
// Benchmarks with Hyperlight's case names, plus raw KVM baselines measured in the same process. Report
// every figure as a ratio to its baseline: this machine is shared and absolute times drift.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "hl/hl.hpp"
#include "vmm/baseline.hpp"

namespace {

struct size_case {
    const char* name;
    std::uint64_t heap;
};
constexpr size_case sizes[] = {
    {"default", 128 * 1024}, {"small", 8ull << 20}, {"medium", 64ull << 20}, {"large", 256ull << 20}};

hl::sandbox_config config_for(const size_case& s) {
    hl::sandbox_config c;
    c.heap_size = s.heap;
    return c;
}

void baseline_kvm_exit_roundtrip_cpl3(benchmark::State& state) {
    auto loop = hl::vmm::baseline::exit_loop::create();
    for (auto _ : state) loop->roundtrip();
}

void baseline_kvm_create_vm_vcpu(benchmark::State& state) {
    for (auto _ : state) hl::vmm::baseline::create_and_destroy_vm_vcpu();
}

void guest_call(benchmark::State& state, size_case s) {
    auto sb = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config_for(s)).evolve();
    const std::string hello = "hello\n";
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::string>("Echo", hello));
}

void create_uninitialized(benchmark::State& state, size_case s) {
    for (auto _ : state) {
        auto sb = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config_for(s));
        state.PauseTiming();
        { auto drop = std::move(sb); }
        state.ResumeTiming();
    }
}

void create_uninitialized_and_drop(benchmark::State& state, size_case s) {
    for (auto _ : state) benchmark::DoNotOptimize(hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config_for(s)));
}

void create_initialized(benchmark::State& state, size_case s) {
    for (auto _ : state) {
        auto sb = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config_for(s)).evolve();
        state.PauseTiming();
        { auto drop = std::move(sb); }
        state.ResumeTiming();
    }
}

void create_initialized_and_drop(benchmark::State& state, size_case s) {
    for (auto _ : state) benchmark::DoNotOptimize(hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config_for(s)).evolve());
}

void workload_24k_in_8k_out(benchmark::State& state, const char* guest) {
    hl::sandbox_config c;
    c.input_buffer_size = 25 * 1024;
    auto sb = hl::uninitialized_sandbox::from_file(guest, c).evolve();
    const std::vector<std::uint8_t> input(24 * 1024, 1);
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::vector<std::uint8_t>>("24K_in_8K_out", input));
}

int register_all() {
    benchmark::RegisterBenchmark("baseline/kvm_exit_roundtrip_cpl3", baseline_kvm_exit_roundtrip_cpl3)->UseRealTime();
    benchmark::RegisterBenchmark("baseline/kvm_create_vm_vcpu", baseline_kvm_create_vm_vcpu)->UseRealTime();
    for (const auto& s : sizes) {
        benchmark::RegisterBenchmark((std::string("guest_calls/call/") + s.name).c_str(), guest_call, s)->UseRealTime();
    }
    for (const auto& s : sizes) {
        const std::string n = s.name;
        benchmark::RegisterBenchmark(("sandboxes/create_uninitialized/" + n).c_str(), create_uninitialized, s)->UseRealTime();
        benchmark::RegisterBenchmark(("sandboxes/create_uninitialized_and_drop/" + n).c_str(), create_uninitialized_and_drop, s)->UseRealTime();
        benchmark::RegisterBenchmark(("sandboxes/create_initialized/" + n).c_str(), create_initialized, s)->UseRealTime();
        benchmark::RegisterBenchmark(("sandboxes/create_initialized_and_drop/" + n).c_str(), create_initialized_and_drop, s)->UseRealTime();
    }
    benchmark::RegisterBenchmark("sample_workloads/24K_in_8K_out_c", workload_24k_in_8k_out, HL_C_SIMPLEGUEST)->UseRealTime();
    benchmark::RegisterBenchmark("sample_workloads/24K_in_8K_out_cpp", workload_24k_in_8k_out, HL_SIMPLEGUEST)->UseRealTime();
    return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
