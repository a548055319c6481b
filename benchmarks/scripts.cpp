// SPDX-License-Identifier: Apache-2.0
// The script engine guests (issue 19): what a request costs in JavaScript on Duktape, warm, with the
// restore a pool does after it, from a new sandbox's first call, and the restore alone.
#include <string>

#include "bench_common.hpp"

namespace {

// A small JSON transform, the request the peers benchmark (benchmarks/peers/) also runs.
constexpr const char* transform_js = R"js(
function transform(order) {
    var total = 0, lines = [];
    for (var i = 0; i < order.items.length; i++) {
        var it = order.items[i];
        total += it.price * it.qty;
        lines.push({ sku: it.sku.toUpperCase(), amount: it.price * it.qty });
    }
    return { id: order.id, customer: order.customer.name, total: total, lines: lines };
}
)js";

constexpr const char* order_json =
    R"({"id": 42, "customer": {"name": "Ada", "tier": "gold"}, "items": [{"sku": "page", "price": 3, "qty": 2},
        {"sku": "ring", "price": 5, "qty": 1}, {"sku": "vcpu", "price": 7, "qty": 4}]})";

hl::sandbox_config engine_config() {
    hl::sandbox_config c;
    c.heap_size = 16u << 20;
    c.stack_size = 4u << 20;
    c.input_buffer_size = 64u << 10;
    c.output_buffer_size = 64u << 10;
    return c;
}

hl::multi_use_sandbox loaded(const char* guest, const char* script) {
    auto sb = hl::uninitialized_sandbox::from_file(guest, engine_config()).evolve();
    sb.call<void>("Load", std::string("bench.js"), std::string(script));
    return sb;
}

std::string request(hl::multi_use_sandbox& sb) {
    return sb.call<std::string>("Call", std::string("transform"), std::string(order_json));
}

// The engine's cost of a request in a sandbox that keeps its state (no restore).
void call(benchmark::State& state, const char* guest) {
    auto sb = loaded(guest, transform_js);
    for (auto _ : state) benchmark::DoNotOptimize(request(sb));
}

// A pool's request: the call, then the restore to the snapshot taken after Load.
void call_with_restore(benchmark::State& state, const char* guest) {
    auto sb = loaded(guest, transform_js);
    const auto snap = sb.snapshot();
    for (auto _ : state) {
        benchmark::DoNotOptimize(request(sb));
        sb.restore(snap);
    }
}

// The restore alone, after each request.
void restore(benchmark::State& state, const char* guest) {
    auto sb = loaded(guest, transform_js);
    const auto snap = sb.snapshot();
    for (auto _ : state) {
        request(sb);
        state.SetIterationTime(hl::bench::seconds([&] { sb.restore(snap); }));
    }
}

// A sandbox created from the loaded snapshot, and its first request.
void first_call_from_snapshot(benchmark::State& state, const char* guest) {
    const auto snap = loaded(guest, transform_js).snapshot();
    for (auto _ : state) {
        state.SetIterationTime(hl::bench::seconds([&] {
            auto sb = hl::multi_use_sandbox::from_snapshot(snap);
            benchmark::DoNotOptimize(request(sb));
        }));
    }
}

const int registered = [] {
    hl::bench::add("scripts/call/js", call, HL_JSGUEST);
    hl::bench::add("scripts/call_with_restore/js", call_with_restore, HL_JSGUEST);
    hl::bench::add_manual("scripts/restore/js", restore, HL_JSGUEST);
    hl::bench::add_manual("scripts/first_call_from_snapshot/js", first_call_from_snapshot, HL_JSGUEST);
    return 0;
}();

}  // namespace
