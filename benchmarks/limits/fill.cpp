// SPDX-License-Identifier: Apache-2.0
// Creates sandboxes and keeps them until one fails, then says how, drops half of them and creates
// one more: what a host meets at a memory limit (benchmarks/README.md, "Limits under load"; run
// it inside a memory cgroup with limits/memcg.sh). Not part of CI.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include "hl/hl.hpp"

namespace {

hl::multi_use_sandbox make(const std::string& guest, const hl::sandbox_config& config) {
    auto u = hl::uninitialized_sandbox::from_file(guest, config);
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Creates sandboxes until one fails, then shows that the host recovers"};
    std::string guest = HL_SIMPLEGUEST;
    int heap_mib = 4;
    int dirty_pages = 512;
    app.add_option("--guest", guest, "the guest (simpleguest or one with its DirtyPages and Add)");
    app.add_option("--heap-mib", heap_mib, "each sandbox's heap")->check(CLI::Range(1, 1024));
    app.add_option("--dirty-pages", dirty_pages, "4 KiB pages each sandbox writes once created (0: none)")
        ->check(CLI::Range(0, 262144));
    CLI11_PARSE(app, argc, argv);
    if (dirty_pages > heap_mib * 256 * 3 / 4) {  // the guest's heap must hold them, with room to spare
        std::fprintf(stderr, "--dirty-pages %d does not fit a %d MiB heap; raise --heap-mib\n", dirty_pages, heap_mib);
        return 2;
    }

    rlimit fds{};
    ::getrlimit(RLIMIT_NOFILE, &fds);
    fds.rlim_cur = fds.rlim_max;  // two descriptors per sandbox: let memory be the limit met
    ::setrlimit(RLIMIT_NOFILE, &fds);

    hl::sandbox_config config;
    config.heap_size = static_cast<std::uint64_t>(heap_mib) << 20;
    std::vector<hl::multi_use_sandbox> kept;
    for (;;) {
        try {
            auto sb = make(guest, config);
            if (dirty_pages > 0) sb.call<std::int32_t>("DirtyPages", dirty_pages);
            kept.push_back(std::move(sb));
        } catch (const std::system_error& e) {
            std::printf("sandbox %zu failed: [%s:%d] %s\n", kept.size() + 1, e.code().category().name(),
                        e.code().value(), e.what());
            break;
        }
        if (kept.size() % 25 == 0) {
            std::printf("%zu sandboxes\n", kept.size());
            std::fflush(stdout);
        }
    }
    kept.erase(kept.begin() + static_cast<std::ptrdiff_t>(kept.size() / 2), kept.end());
    try {
        int answered = 0;
        for (auto& sb : kept) answered += sb.call<std::int32_t>("Add", 40, 2) == 42;
        auto fresh = make(guest, config);
        std::printf("kept %zu, of which %d answered Add(40, 2); a new sandbox: Add(40, 2) -> %d\n", kept.size(),
                    answered, fresh.call<std::int32_t>("Add", 40, 2));
    } catch (const std::system_error& e) {
        std::printf("not recovered: [%s:%d] %s\n", e.code().category().name(), e.code().value(), e.what());
        return 1;
    }
    return 0;
}
