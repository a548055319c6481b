// SPDX-License-Identifier: Apache-2.0
// Raw KVM floors, measured with plain ioctls in the same process as everything they are compared to.
#include <cstring>
#include <vector>

#include "bench_common.hpp"
#include "vmm/baseline.hpp"

namespace {

void kvm_exit_roundtrip_cpl3(benchmark::State& state) {
    auto loop = hl::vmm::baseline::exit_loop::create();
    for (auto _ : state) loop->roundtrip();
}

void kvm_create_vm_vcpu(benchmark::State& state) {
    for (auto _ : state) hl::vmm::baseline::create_and_destroy_vm_vcpu();
}

void memcpy_64mb(benchmark::State& state) {
    std::vector<char> from(64 << 20, 1), to(64 << 20, 2);
    for (auto _ : state) {
        std::memcpy(to.data(), from.data(), from.size());
        benchmark::DoNotOptimize(to.data());
    }
}

const int registered = [] {
    hl::bench::add("baseline/kvm_exit_roundtrip_cpl3", kvm_exit_roundtrip_cpl3);
    hl::bench::add("baseline/kvm_create_vm_vcpu", kvm_create_vm_vcpu);
    hl::bench::add("baseline/memcpy_64MB", memcpy_64mb);
    return 0;
}();

}  // namespace
