// SPDX-License-Identifier: Apache-2.0
// Host-side pieces on their own: the wire protocol with large messages, and guest memory access.
#include <cstring>
#include <vector>

#include "bench_common.hpp"
#include "mem/guest_memory.hpp"
#include "protocol/codec.hpp"

namespace {

constexpr std::size_t ten_mb = 10 * 1024 * 1024;

// Hyperlight's 11-parameter call with four 10 MB buffers.
struct big_call {
    std::vector<std::uint8_t> bytes = std::vector<std::uint8_t>(ten_mb, 1);
    std::string text = std::string(ten_mb, '\x02');
    std::vector<hl::argument> args() const {
        return {std::span<const std::uint8_t>(bytes), std::string_view(text), std::int32_t{42}, std::uint32_t{100},
                std::int64_t{1000}, std::uint64_t{2000}, 521521.53f, 432.53, true,
                std::span<const std::uint8_t>(bytes), std::string_view(text)};
    }
};

void serialize_function_call(benchmark::State& state) {
    const big_call call;
    const auto args = call.args();
    for (auto _ : state) {
        flatbuffers::FlatBufferBuilder builder;  // a fresh one each time, as a first call would see
        benchmark::DoNotOptimize(hl::protocol::encode_call(builder, "TestFunction", hl::value_type::int32, args).data());
    }
}

void deserialize_function_call(benchmark::State& state) {
    const big_call call;
    flatbuffers::FlatBufferBuilder builder;
    const auto bytes = hl::protocol::encode_call(builder, "TestFunction", hl::value_type::int32, call.args());
    for (auto _ : state) benchmark::DoNotOptimize(hl::protocol::decode_call(bytes));
}

// A 50 MB byte vector and a 50 MB string, through to the guest and back.
void guest_call_with_large_parameters(benchmark::State& state) {
    constexpr std::size_t size = 50 * 1024 * 1024;
    hl::sandbox_config config;
    config.input_buffer_size = 2 * size + (1 << 20);
    config.heap_size = 15ull * size;
    auto sb = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config).evolve();
    const std::vector<std::uint8_t> bytes(size, 1);
    const std::string text(size, 'a');
    for (auto _ : state) sb.call<void>("LargeParameters", bytes, text);
}

void fill(benchmark::State& state, std::size_t size) {
    auto memory = hl::mem::guest_memory::create(size);
    for (auto _ : state) {
        auto s = memory.writable(hl::mem::gpa{0}, size);
        std::memset(s.data(), 0xab, s.size());
        benchmark::ClobberMemory();
    }
}

void copy_to_slice(benchmark::State& state, std::size_t size) {
    auto memory = hl::mem::guest_memory::create(size);
    std::memset(memory.writable(hl::mem::gpa{0}, size).data(), 1, size);
    std::vector<std::byte> out(size);
    for (auto _ : state) {
        const auto s = memory.span(hl::mem::gpa{0}, size);
        std::memcpy(out.data(), s.data(), size);
        benchmark::ClobberMemory();
    }
}

void copy_from_slice(benchmark::State& state, std::size_t size) {
    auto memory = hl::mem::guest_memory::create(size);
    const std::vector<std::byte> in(size, std::byte{7});
    for (auto _ : state) {
        std::memcpy(memory.writable(hl::mem::gpa{0}, size).data(), in.data(), size);
        benchmark::ClobberMemory();
    }
}

const int registered = [] {
    hl::bench::add("function_call_serialization/serialize_function_call", serialize_function_call);
    hl::bench::add("function_call_serialization/deserialize_function_call", deserialize_function_call);
    hl::bench::add("guest_functions_with_large_parameters/guest_call_with_large_parameters",
                   guest_call_with_large_parameters);
    for (auto [name, size] : {std::pair{"1MB", std::size_t{1} << 20}, std::pair{"64MB", std::size_t{64} << 20}}) {
        hl::bench::add(std::string("shared_memory/fill/") + name, fill, size);
        hl::bench::add(std::string("shared_memory/copy_to_slice/") + name, copy_to_slice, size);
        hl::bench::add(std::string("shared_memory/copy_from_slice/") + name, copy_from_slice, size);
    }
    return 0;
}();

}  // namespace
