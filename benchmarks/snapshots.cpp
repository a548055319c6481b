// SPDX-License-Identifier: Apache-2.0
#include "bench_common.hpp"

namespace {

using hl::bench::size_case;

const std::string hello = "hello\n";

void create(benchmark::State& state, size_case s) {
    auto sb = hl::bench::make(s);
    for (auto _ : state) {
        sb.call<std::string>("Echo", hello);
        std::shared_ptr<const hl::snapshot> snap;
        state.SetIterationTime(hl::bench::seconds([&] { snap = sb.snapshot(); }));
    }
}

// Restore after an Echo call, timing the restore alone.
void restore(benchmark::State& state, size_case s) {
    auto sb = hl::bench::make(s);
    const auto snap = sb.snapshot();
    for (auto _ : state) {
        sb.call<std::string>("Echo", hello);
        state.SetIterationTime(hl::bench::seconds([&] { sb.restore(snap); }));
    }
}

// Restore after the guest wrote `pages` distinct heap pages (plus the few any call writes).
void restore_dirty_pages(benchmark::State& state, size_case s, std::int32_t pages) {
    auto sb = hl::bench::make(s);
    sb.call<std::int32_t>("DirtyPages", pages);  // allocate the area before the snapshot
    const auto snap = sb.snapshot();
    for (auto _ : state) {
        sb.call<std::int32_t>("DirtyPages", pages);
        state.SetIterationTime(hl::bench::seconds([&] { sb.restore(snap); }));
    }
}

const int registered = [] {
    for (const auto& s : hl::bench::sizes) {
        hl::bench::add_manual(std::string("snapshots/create/") + s.name, create, s);
    }
    for (const auto& s : hl::bench::sizes) {
        hl::bench::add_manual(std::string("snapshots/restore/") + s.name, restore, s);
    }
    for (std::int32_t pages : {1, 16, 256}) {
        for (const auto& s : hl::bench::sizes) {
            if (std::uint64_t(pages) * 4096 * 2 > s.heap) continue;  // the default 128 KiB heap has room for 16
            hl::bench::add_manual("snapshots/restore_dirty_pages/" + std::to_string(pages) + "/" + s.name,
                                  restore_dirty_pages, s, pages);
        }
    }
    return 0;
}();

}  // namespace
