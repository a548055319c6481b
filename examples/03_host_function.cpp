// SPDX-License-Identifier: Apache-2.0
// Host functions: the guest calls back into the application. Any callable works; its signature
// is deduced. An exception becomes an error the guest sees (and may pass on to the caller).
#include <cstdio>
#include <stdexcept>
#include <string>

#include "hl/hl.hpp"

int main() {
    try {
        auto u = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST);
        int calls = 0;
        u.register_host_function("HostAdd", [&calls](std::int32_t a, std::int32_t b) {
            ++calls;
            return a + b;
        });
        u.set_print_handler([](std::string_view text) { std::printf("[guest says] %.*s", int(text.size()), text.data()); });
        u.set_log_handler([](const hl::log_record& r) {
            std::printf("[guest log %s] %.*s\n", hl::to_string(r.level), int(r.message.size()), r.message.data());
        });
        auto sb = std::move(u).evolve();

        std::printf("Add(40, 2) -> %d (the guest asked the host)\n", sb.call<std::int32_t>("Add", 40, 2));
        const std::int64_t sum = sb.call<std::int64_t>("CallHostManyTimes", 1000);
        std::printf("CallHostManyTimes(1000) -> %lld; host calls so far: %d\n", static_cast<long long>(sum), calls);
        sb.call<std::int32_t>("PrintOutput", std::string("printf from inside the micro-VM\n"));
        sb.call<void>("LogMessage", static_cast<std::int32_t>(hl::log_level::warning), std::string("a warning"));

        sb.register_host_function("HostAdd", [](std::int32_t, std::int32_t) -> std::int32_t {
            throw std::runtime_error("the adder is broken");
        });
        try {
            sb.call<std::int32_t>("Add", 1, 2);
        } catch (const hl::error& e) {
            std::printf("Add with a throwing host function -> %s\n", e.what());
        }
        return 0;
    } catch (const hl::error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return e.code() == hl::errc::kvm_unavailable ? 77 : 1;
    }
}
