// SPDX-License-Identifier: Apache-2.0
// Raw KVM floors, measured with plain ioctls in the same process as everything they are compared to.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "kvm_baseline.hpp"

namespace {

void kvm_exit_roundtrip_cpl3(benchmark::State& state) {
    auto loop = hl::bench::baseline::exit_loop::create();
    for (auto _ : state) loop->roundtrip();
}

void kvm_create_vm_vcpu(benchmark::State& state) {
    for (auto _ : state) hl::bench::baseline::create_and_destroy_vm_vcpu();
}

// From setting immediate_exit and signalling a vCPU thread spinning at CPL3 to its KVM_RUN returning.
void kvm_kick_latency(benchmark::State& state) {
    auto spin = hl::bench::baseline::spin_loop::create();
    for (auto _ : state) {
        std::atomic<bool> started{false};
        std::chrono::steady_clock::time_point returned;
        std::thread vcpu([&] {
            started = true;
            spin->run();
            returned = std::chrono::steady_clock::now();
        });
        while (!started) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let it enter the guest
        const auto kicked = std::chrono::steady_clock::now();
        spin->kick(static_cast<unsigned long>(vcpu.native_handle()));
        vcpu.join();
        state.SetIterationTime(std::chrono::duration<double>(returned - kicked).count());
    }
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
    hl::bench::latency(hl::bench::add_manual("baseline/kvm_kick_latency", kvm_kick_latency));
    return 0;
}();

}  // namespace
