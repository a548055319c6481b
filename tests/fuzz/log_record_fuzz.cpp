// SPDX-License-Identifier: Apache-2.0
// LogRecord from the guest: decode_log_record() refuses with protocol_error or returns a known level
// and views inside the message.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_support.hpp"
#include "protocol/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace hl;
    const std::span<const std::byte> message(reinterpret_cast<const std::byte*>(data), size);
    log_record r;
    try {
        r = protocol::decode_log_record(message);
    } catch (const error& e) {
        fuzz::expect_code(e, errc::protocol_error);
        return 0;
    }
    fuzz::expect(r.level <= log_level::critical && std::strlen(to_string(r.level)) > 0, "unknown log level");
    fuzz::expect(fuzz::inside(r.message, message) && fuzz::inside(r.file, message), "text outside the message");
    return 0;
}
