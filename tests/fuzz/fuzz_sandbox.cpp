// SPDX-License-Identifier: Apache-2.0
#include "fuzz_sandbox.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "fuzz_support.hpp"

namespace hl::fuzz {

const std::vector<std::byte>& fuzzguest_elf() {
    static const std::vector<std::byte> elf = [] {
        std::ifstream in(HL_FUZZGUEST, std::ios::binary);
        const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
        if (bytes.empty()) fail("cannot read the fuzz guest", HL_FUZZGUEST);
        std::vector<std::byte> out(bytes.size());
        std::memcpy(out.data(), bytes.data(), bytes.size());
        return out;
    }();
    return elf;
}

multi_use_sandbox make_sandbox(std::span<const std::byte> elf) {
    try {
        auto u = uninitialized_sandbox::from_bytes(elf);
        u.register_host_function("Add", [](std::int32_t a, std::int32_t b) { return a + b; });
        u.register_host_function("Echo", [](std::string s) { return s; });
        u.register_host_function("Bytes", [](std::vector<std::uint8_t> b) { return b; });
        u.register_host_function("Mixed", [](std::int64_t a, double b, bool c, std::uint32_t d, float e) {
            return static_cast<double>(a) + b + c + d + e;
        });
        u.register_host_function("Throws", [](std::int32_t) -> std::int32_t { throw std::runtime_error("fuzz"); });
        u.register_host_function("Nothing", [] {});
        u.set_print_handler([](std::string_view) {});
        u.set_log_handler([](const log_record&) {});
        return std::move(u).evolve();
    } catch (const hl::error& e) {
        if (e.code() == make_error_code(errc::kvm_unavailable)) {
            std::fprintf(stderr, "skipped: %s\n", e.what());
            std::exit(77);
        }
        throw;
    }
}

bool documented(const hl::error& e) {
    switch (static_cast<errc>(e.code().value())) {
    case errc::guest_error:
    case errc::guest_aborted:
    case errc::guest_fault:
    case errc::stack_overflow:
    case errc::timed_out:
    case errc::unknown_function:
    case errc::parameter_mismatch:
    case errc::return_type_mismatch:
    case errc::result_too_large:
    case errc::protocol_error:
    case errc::out_of_memory:
    case errc::host_function_error:
    case errc::argument_too_large:
        return e.code().category() == error_category();
    default:
        return false;
    }
}

void expect_recovers(multi_use_sandbox& sb, const std::shared_ptr<const snapshot>& clean) {
    try {
        sb.restore(clean);
    } catch (const hl::error& e) {
        fail("restore() failed after a hostile call:", e.what());
    }
    expect(!sb.poisoned(), "poisoned after restore()");
    std::int64_t got = 0;
    try {
        got = sb.call<std::int64_t>("Identity", std::int64_t{0x1234567890});
    } catch (const hl::error& e) {
        fail("the call after restore() failed:", e.what());
    }
    expect(got == 0x1234567890, "the call after restore() returned a wrong value");
}

}  // namespace hl::fuzz
