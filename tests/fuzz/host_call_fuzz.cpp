// SPDX-License-Identifier: Apache-2.0
// FunctionCall from the guest (a host call): decode_call() refuses with protocol_error or returns
// views inside the message that encode and decode back to the same call.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "protocol/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace hl;
    const std::span<const std::byte> message(reinterpret_cast<const std::byte*>(data), size);
    protocol::call_view call;
    try {
        call = protocol::decode_call(message);
    } catch (const error& e) {
        fuzz::expect_code(e, errc::protocol_error);
        return 0;
    }
    fuzz::expect(call.arguments.size() <= max_parameters, "more parameters than allowed");
    fuzz::expect(fuzz::inside(call.function_name, message), "function name outside the message");
    for (const auto& a : call.arguments) {
        if (const auto* s = std::get_if<std::string_view>(&a)) fuzz::expect(fuzz::inside(*s, message), "string outside the message");
        if (const auto* b = std::get_if<std::span<const std::uint8_t>>(&a)) {
            fuzz::expect(fuzz::inside({reinterpret_cast<const char*>(b->data()), b->size()}, message), "bytes outside the message");
        }
    }
    flatbuffers::FlatBufferBuilder builder;
    const auto again = protocol::decode_call(protocol::encode_call(builder, call.function_name, call.expected_return, call.arguments));
    fuzz::expect(again.function_name == call.function_name, "name changed in a round trip");
    fuzz::expect(again.expected_return == call.expected_return, "return type changed in a round trip");
    fuzz::expect(again.arguments.size() == call.arguments.size(), "argument count changed in a round trip");
    for (std::size_t i = 0; i < call.arguments.size(); ++i) {
        fuzz::expect(fuzz::same_value(again.arguments[i], call.arguments[i]), "argument changed in a round trip");
    }
    return 0;
}
