// SPDX-License-Identifier: Apache-2.0
// Host-side FlatBuffers encoding and decoding of the messages in hl.fbs. Every decode runs the
// FlatBuffers Verifier first: the bytes come from guest memory and are hostile until verified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "hl/log.hpp"
#include "hl/value.hpp"

namespace hl::protocol {

/// The guest SDK's reason for failing a call (mirrors fb::ErrorKind).
enum class guest_error_kind : std::uint8_t {
    user, function_not_found, parameter_mismatch, return_type_mismatch, malformed_call, out_of_memory,
    result_too_large, host_function_error, argument_too_large
};

struct guest_error_info {
    guest_error_kind kind = guest_error_kind::user;
    std::int32_t code = 0;
    std::string message;
};

/// A decoded FunctionCallResult: either a value or the guest's error.
struct call_result {
    return_value value;
    std::optional<guest_error_info> error;
};

/// A decoded FunctionCall. Views into the message: valid while the message bytes are.
struct call_view {
    std::string_view function_name;
    std::vector<argument> arguments;
    value_type expected_return = value_type::void_type;
};

/// Serializes a FunctionCall into `builder` (cleared first) and returns the finished bytes, which live
/// in the builder. Throws hl::error(errc::parameter_mismatch) for more than max_parameters arguments.
std::span<const std::byte> encode_call(flatbuffers::FlatBufferBuilder& builder, std::string_view function_name,
                                       value_type expected_return, std::span<const argument> arguments);

/// Verifies and decodes a FunctionCall. Throws hl::error(errc::protocol_error) when the bytes are not one.
call_view decode_call(std::span<const std::byte> message);

/// Serializes a FunctionCallResult carrying `value`.
std::span<const std::byte> encode_result(flatbuffers::FlatBufferBuilder& builder, const return_value& value);

/// Serializes a FunctionCallResult carrying an error.
std::span<const std::byte> encode_error(flatbuffers::FlatBufferBuilder& builder, const guest_error_info& error);

/// Verifies and decodes a FunctionCallResult. Throws hl::error(errc::protocol_error) when the bytes are
/// not one, or when it holds neither or both of a value and an error.
call_result decode_result(std::span<const std::byte> message);

/// Verifies and decodes a LogRecord. Views into the message. Throws hl::error(errc::protocol_error).
log_record decode_log_record(std::span<const std::byte> message);

}  // namespace hl::protocol
