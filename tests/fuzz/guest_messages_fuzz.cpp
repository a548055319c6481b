// SPDX-License-Identifier: Apache-2.0
// Guest-to-host messages on the sandbox's own paths: the fuzz guest copies the fuzzer's bytes into
// its output buffer (with a true or forged size header) and exits on a port, so the host decodes
// them exactly as it decodes any guest's: a call result (done port), a host call, printed text, a
// log record, an abort message, or output of an unknown kind. Every call must end with a value
// or a documented error, and restore() must bring the sandbox back.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "fuzz_sandbox.hpp"
#include "fuzz_support.hpp"
#include "hl/abi/hl_abi.h"

namespace {

struct target {
    hl::multi_use_sandbox sb;
    std::shared_ptr<const hl::snapshot> clean;
};

target& the_target() {
    static target t = [] {
        auto sb = hl::fuzz::make_sandbox(hl::fuzz::fuzzguest_elf());
        auto clean = sb.snapshot();
        return target{std::move(sb), std::move(clean)};
    }();
    return t;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    the_target();
    return 0;
}

// Input: byte 0 picks the port and value, byte 1 whether the size header lies (and by how much),
// the rest is the message.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    struct exit_kind {
        std::int32_t port, value;
    };
    static constexpr exit_kind exits[] = {
        {HL_PORT_DONE, HL_STATUS_OK},     {HL_PORT_HOST_CALL, 0},         {HL_PORT_OUTPUT, HL_OUTPUT_PRINT},
        {HL_PORT_OUTPUT, HL_OUTPUT_LOG},  {HL_PORT_ABORT, 0x2a},          {HL_PORT_OUTPUT, 7},
        {HL_PORT_DONE, HL_STATUS_INIT_FAILED},
    };
    const exit_kind e = exits[data[0] % std::size(exits)];
    // A forged size: anything from 0 to past the output buffer's end.
    const std::int64_t claimed = data[1] < 192 ? -1 : static_cast<std::int64_t>(data[1] - 192) * 512;
    const std::span<const std::uint8_t> message(data + 2, size - 2);
    auto& t = the_target();
    try {
        t.sb.call<std::int64_t>("Send", e.port, e.value, claimed, message);
    } catch (const hl::error& err) {
        hl::fuzz::expect(hl::fuzz::documented(err), "undocumented error:", err.what());
    }
    hl::fuzz::expect_recovers(t.sb, t.clean);
    return 0;
}
