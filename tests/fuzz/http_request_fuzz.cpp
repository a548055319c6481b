// SPDX-License-Identifier: Apache-2.0
// 06_server's HTTP reader on a hostile byte stream, fed in pieces of fuzzer-chosen sizes: every
// message either completes within the limits or fails with one of the documented statuses; bytes
// after a complete message start the next one (pipelining), as the server feeds them.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_support.hpp"
#include "http.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    using web::message_reader;
    // First byte: request or response reader, and a response to HEAD; second: the piece size.
    const auto kind = data[0] & 1 ? message_reader::kind::response : message_reader::kind::request;
    const bool head = data[0] & 2;
    const std::size_t piece = data[1] % 64 + 1;
    const web::http_limits limits{.max_header_bytes = 1024, .max_body_bytes = 2048};
    std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
    message_reader reader(kind, limits);
    reader.reset(head);
    // Each round consumes at least one byte or ends the stream: bounded by the input's size.
    for (std::size_t rounds = 0; rounds <= size; ++rounds) {
        const std::string_view chunk = rest.substr(0, piece);
        const std::size_t used = chunk.empty() ? 0 : reader.feed(chunk);
        hl::fuzz::expect(used <= chunk.size(), "feed() consumed more than it was given");
        rest.remove_prefix(used);
        if (chunk.empty()) reader.feed_eof();
        const auto s = reader.status();
        if (s == message_reader::state::failed) {
            const int st = reader.error_status();
            hl::fuzz::expect(st == 400 || st == 405 || st == 413 || st == 431 || st == 505, "undocumented error status",
                             reader.error_text());
            hl::fuzz::expect(!reader.error_text().empty(), "failure without a reason");
            return 0;
        }
        if (s == message_reader::state::complete) {
            hl::fuzz::expect(reader.message().body.size() <= limits.max_body_bytes, "body beyond the limit");
            if (chunk.empty()) return 0;
            reader.reset(head);
            continue;
        }
        if (chunk.empty()) return 0;  // at end of stream a partial message must have failed or completed
        hl::fuzz::expect(used == chunk.size(), "an incomplete message left bytes unread");
    }
    hl::fuzz::fail("the reader made no progress");
}
