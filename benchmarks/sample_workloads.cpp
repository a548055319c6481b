// SPDX-License-Identifier: Apache-2.0
#include <vector>

#include "bench_common.hpp"

namespace {

void in24k_out8k(benchmark::State& state, const char* guest) {
    hl::sandbox_config c;
    c.input_buffer_size = 25 * 1024;
    auto sb = hl::uninitialized_sandbox::from_file(guest, c).evolve();
    const std::vector<std::uint8_t> input(24 * 1024, 1);
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::vector<std::uint8_t>>("24K_in_8K_out", input));
}

const int registered = [] {
    hl::bench::add("sample_workloads/24K_in_8K_out_c", in24k_out8k, HL_C_SIMPLEGUEST);
    hl::bench::add("sample_workloads/24K_in_8K_out_cpp", in24k_out8k, HL_SIMPLEGUEST);
    return 0;
}();

}  // namespace
