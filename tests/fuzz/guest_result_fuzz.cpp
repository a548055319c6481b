// SPDX-License-Identifier: Apache-2.0
// FunctionCallResult from the guest: decode_result() refuses with protocol_error or returns a value
// or an error that encodes and decodes back to itself.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "protocol/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace hl;
    const std::span<const std::byte> message(reinterpret_cast<const std::byte*>(data), size);
    protocol::call_result r;
    try {
        r = protocol::decode_result(message);
    } catch (const error& e) {
        fuzz::expect_code(e, errc::protocol_error);
        return 0;
    }
    flatbuffers::FlatBufferBuilder builder;
    const auto again = protocol::decode_result(r.error ? protocol::encode_error(builder, *r.error)
                                                       : protocol::encode_result(builder, r.value));
    fuzz::expect(again.error.has_value() == r.error.has_value(), "error lost in a round trip");
    if (r.error) {
        fuzz::expect(again.error->kind == r.error->kind && again.error->code == r.error->code &&
                         again.error->message == r.error->message,
                     "error changed in a round trip");
    } else {
        fuzz::expect(fuzz::same_value(again.value, r.value), "value changed in a round trip");
    }
    return 0;
}
