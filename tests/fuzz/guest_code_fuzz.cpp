// SPDX-License-Identifier: Apache-2.0
// The guest-code fuzzer: the fuzz guest, with a fuzzer-chosen instruction sequence patched into its
// code pages, runs it with registers pointing into every region. Then the host checks what a pool
// relies on: the host survived; the call ended with a value or a documented error; restore() brings
// the sandbox back and the next call returns the right value; and the next task sees exactly what
// a task on a fresh sandbox sees (Probe() digests memory, registers, FPU/SSE state and segment bases).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "fuzz_sandbox.hpp"
#include "fuzz_support.hpp"
#include "guest_code_program.hpp"

namespace {

using namespace std::chrono_literals;
constexpr std::string_view marker = "HL-FUZZ-CODE-PAGES-PATCHED-HERE!";
constexpr std::size_t code_room = 8192 - 64;  // the return stub sits at the end of the two pages
constexpr std::size_t selector_bytes = 15;    // one per register hl_fuzz_enter loads

std::size_t code_offset() {
    static const std::size_t at = [] {
        const auto& elf = hl::fuzz::fuzzguest_elf();
        const auto* begin = reinterpret_cast<const char*>(elf.data());
        const std::string_view file(begin, elf.size());
        const auto found = file.find(marker);
        if (found == std::string_view::npos || file.find(marker, found + 1) != std::string_view::npos) {
            hl::fuzz::fail("the fuzz guest has no single code-page marker");
        }
        return found;
    }();
    return at;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    code_offset();
    return 0;
}

// Input: 15 register selectors (see RunCode in the fuzz guest), then the program (guest_code_program).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::size_t nsel = std::min(size, selector_bytes);
    const std::span<const std::uint8_t> selectors(data, nsel);
    const auto code = hl::fuzz::assemble({data + nsel, size - nsel}, code_room);
    std::vector<std::byte> elf = hl::fuzz::fuzzguest_elf();
    std::memset(elf.data() + code_offset(), 0x90, code_room);
    if (!code.empty()) std::memcpy(elf.data() + code_offset(), code.data(), code.size());  // empty: data() may be null

    auto sb = hl::fuzz::make_sandbox(elf);
    const auto clean = sb.snapshot();
    const auto fresh = sb.call<std::uint64_t>("Probe");
    sb.restore(clean);
    try {
        sb.call_for<std::int64_t>(20ms, "RunCode", selectors);
    } catch (const hl::error& e) {
        hl::fuzz::expect(hl::fuzz::documented(e), "undocumented error:", e.what());
    }
    hl::fuzz::expect_recovers(sb, clean);
    sb.restore(clean);
    hl::fuzz::expect(sb.call<std::uint64_t>("Probe") == fresh, "the next task sees what the previous one left");
    return 0;
}
