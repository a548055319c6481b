// SPDX-License-Identifier: Apache-2.0
// Snapshots: take one between calls, restore it in microseconds (only the pages written since are
// copied back), and start new sandboxes from it without running the guest's initialisation again.
#include <chrono>
#include <cstdio>

#include "hl/hl.hpp"

int main() {
    try {
        auto sb = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST).evolve();
        auto clean = sb.snapshot();
        std::printf("snapshot: %llu bytes of guest memory, %llu stored\n",
                    static_cast<unsigned long long>(clean->memory_size()),
                    static_cast<unsigned long long>(clean->stored_bytes()));

        sb.call<void>("StoreSecret", std::string("request 1's secret"));
        std::printf("after StoreSecret: GetSecret -> \"%s\"\n", sb.call<std::string>("GetSecret").c_str());

        const auto start = std::chrono::steady_clock::now();
        sb.restore(clean);
        const auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
        std::printf("restore took %.1f us; GetSecret -> \"%s\"\n", us, sb.call<std::string>("GetSecret").c_str());

        // A fault poisons the sandbox; restore makes it usable again.
        try {
            sb.call<void>("WriteNull");
        } catch (const hl::error& e) {
            std::printf("WriteNull -> %s; poisoned: %s\n", e.code().message().c_str(), sb.poisoned() ? "yes" : "no");
        }
        sb.restore(clean);
        std::printf("restored; IncrementCounter -> %d\n", sb.call<std::int32_t>("IncrementCounter"));

        // call_with_restore: call, then restore, so every call starts from the snapshot.
        sb.restore(clean);
        for (int i = 0; i < 3; ++i) {
            std::printf("call_with_restore IncrementCounter -> %d\n",
                        sb.call_with_restore<std::int32_t>(clean, "IncrementCounter"));
        }

        auto twin = hl::multi_use_sandbox::from_snapshot(clean);  // copy-on-write, no re-initialisation
        std::printf("a twin from the snapshot: IncrementCounter -> %d\n", twin.call<std::int32_t>("IncrementCounter"));
        return 0;
    } catch (const hl::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return e.code() == hl::errc::kvm_unavailable ? 77 : 1;
    }
}
