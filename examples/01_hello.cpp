// SPDX-License-Identifier: Apache-2.0
// Load a guest, evolve it into a sandbox, and call its functions by name with typed arguments.
//
//   01_hello [path/to/simpleguest.elf]
#include <cstdio>
#include <string>
#include <vector>

#include "hl/hl.hpp"

int main(int argc, char** argv) {
    const char* guest = argc > 1 ? argv[1] : HL_SIMPLEGUEST;
    try {
        std::printf("loading %s\n", guest);
        hl::uninitialized_sandbox loaded = hl::uninitialized_sandbox::from_file(guest);
        // The guest's Add asks the host to do the addition.
        loaded.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) {
            std::printf("  host: HostAdd(%d, %d) called from the guest\n", a, b);
            return a + b;
        });
        hl::multi_use_sandbox sandbox = std::move(loaded).evolve();
        std::printf("guest initialised in its own micro-VM\n");

        const std::string greeting = sandbox.call<std::string>("Echo", std::string("hello from the host"));
        std::printf("Echo(\"hello from the host\") -> \"%s\"\n", greeting.c_str());

        std::printf("Add(40, 2) -> %d\n", sandbox.call<std::int32_t>("Add", 40, 2));

        for (int i = 0; i < 3; ++i) std::printf("IncrementCounter() -> %d (state persists)\n", sandbox.call<std::int32_t>("IncrementCounter"));

        std::printf("PrintOutput -> %d characters\n",
                    sandbox.call<std::int32_t>("PrintOutput", std::string("  guest: printf reaches the host's stdout\n")));

        const std::vector<std::uint8_t> bytes{1, 2, 3, 4};
        std::printf("EchoBytes([1 2 3 4]) -> %zu bytes\n", sandbox.call<std::vector<std::uint8_t>>("EchoBytes", bytes).size());

        try {
            sandbox.call<std::int32_t>("Add", 1, std::string("two"));
        } catch (const hl::error& e) {
            std::printf("Add(1, \"two\") -> error: %s (sandbox still usable: %s)\n", e.what(),
                        sandbox.poisoned() ? "no" : "yes");
        }

        try {
            sandbox.call<void>("WriteNull");
        } catch (const hl::error& e) {
            std::printf("WriteNull() -> %s\n", e.what());
            std::printf("the host is fine; the sandbox is poisoned: %s\n", sandbox.poisoned() ? "yes" : "no");
        }
        return 0;
    } catch (const hl::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return e.code() == hl::errc::kvm_unavailable ? 77 : 1;  // 77: "skipped" for the smoke test
    }
}
