// SPDX-License-Identifier: Apache-2.0
#include "sandbox/call_buffers.hpp"

#include <algorithm>

#include "hl/abi/hl_abi.h"
#include "hl/error.hpp"
#include "sandbox/poisoning.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

// A call's arguments may be large once; keeping the builder's memory for every later call is not
// worth it.
constexpr std::size_t builder_keep_limit = 1 << 20;

// The header and the message behind it; the caller has checked that the message fits.
void write_message(mem::guest_memory& memory, mem::gpa buffer, std::span<const std::byte> message) {
    memory.write(buffer, hl_buffer_header{message.size()});
    memory.write_bytes(buffer + HL_BUFFER_HEADER_SIZE, message);
}

}  // namespace

call_buffers::call_buffers(mem::guest_memory& memory, const mem::layout& layout) noexcept
    : memory_(memory), layout_(layout) {}

std::uint64_t call_buffers::input_capacity() const noexcept { return layout_.input_size() - HL_BUFFER_HEADER_SIZE; }

std::uint64_t call_buffers::output_capacity() const noexcept { return layout_.output_size() - HL_BUFFER_HEADER_SIZE; }

void call_buffers::write_call(std::string_view name, value_type return_type, std::span<const argument> args) {
    const auto message = protocol::encode_call(builder_, name, return_type, args);
    if (message.size() > input_capacity()) {
        throw error(errc::argument_too_large,
                    util::strfmt("the call to '%s' is %zu bytes serialized; the input buffer holds %llu "
                                 "(raise sandbox_config::input_buffer_size)",
                                 util::name_for_message(name).c_str(), message.size(),
                                 static_cast<unsigned long long>(input_capacity())));
    }
    write_message(memory_, layout_.input(), message);
    if (builder_.GetSize() > builder_keep_limit) builder_.Reset();
}

std::span<const std::byte> call_buffers::message(const char* what) const {
    const std::uint64_t size = memory_.read<hl_buffer_header>(layout_.output()).size;
    if (size > output_capacity()) {
        throw poisoning(errc::protocol_error,
                        util::strfmt("the guest's %s claims %llu bytes; the output buffer holds %llu", what,
                                     static_cast<unsigned long long>(size),
                                     static_cast<unsigned long long>(output_capacity())));
    }
    return memory_.span(layout_.output() + HL_BUFFER_HEADER_SIZE, size);
}

std::span<const std::byte> call_buffers::message_prefix(std::uint64_t limit) const {
    const std::uint64_t size = memory_.read<hl_buffer_header>(layout_.output()).size;
    return memory_.span(layout_.output() + HL_BUFFER_HEADER_SIZE, std::min({size, output_capacity(), limit}));
}

void call_buffers::reply(const return_value& value) { reply_message(protocol::encode_result(builder_, value)); }

void call_buffers::reply_error(protocol::guest_error_kind kind, std::string message) {
    auto encoded = protocol::encode_error(builder_, {kind, 0, message});
    if (encoded.size() > output_capacity()) {
        // Room for "...", FlatBuffer padding, and the guest's passing it on in its own result.
        const std::uint64_t cut = encoded.size() - output_capacity() + 64;
        message.resize(message.size() > cut ? message.size() - cut : 0);
        message += "...";
        encoded = protocol::encode_error(builder_, {kind, 0, message});
    }
    reply_message(encoded);
}

void call_buffers::reply_message(std::span<const std::byte> message) {
    if (message.size() > output_capacity()) {
        const std::string text = util::strfmt(
            "the host function's result is %zu bytes; the output buffer holds %llu (raise "
            "sandbox_config::output_buffer_size)",
            message.size(), static_cast<unsigned long long>(output_capacity()));
        return reply_message(protocol::encode_error(builder_, {protocol::guest_error_kind::result_too_large, 0, text}));
    }
    write_message(memory_, layout_.output(), message);
}

}  // namespace hl::detail
