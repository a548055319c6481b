// SPDX-License-Identifier: Apache-2.0
// For the host_services tests: guest memory with its two buffers, and the guest's side of the
// output buffer (a host call, text or a log record written there, the host's answer read back).
#pragma once

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string_view>

#include "hl/abi/hl_abi.h"
#include "hl/abi/hl_generated.h"
#include "hl/config.hpp"
#include "protocol/codec.hpp"
#include "sandbox/call_buffers.hpp"
#include "sandbox/call_state.hpp"
#include "sandbox/host_services.hpp"

namespace hl::detail::test {

class host_services_test : public ::testing::Test {
protected:
    static mem::layout make_layout() {
        sandbox_config config;
        config.input_buffer_size = 4096;
        config.output_buffer_size = 4096;
        return mem::layout::compute(config, mem::page_size);
    }

    // What the guest does: its message, behind a header that says how long it is.
    void guest_writes(std::span<const std::byte> message) {
        memory.write(layout.output(), hl_buffer_header{message.size()});
        memory.write_bytes(layout.output() + HL_BUFFER_HEADER_SIZE, message);
    }
    void guest_calls(std::string_view name, value_type expected, std::span<const argument> args = {}) {
        flatbuffers::FlatBufferBuilder builder;
        guest_writes(protocol::encode_call(builder, name, expected, args));
    }
    void guest_prints(std::string_view text) { guest_writes(std::as_bytes(std::span(text.data(), text.size()))); }
    void guest_logs(fb::LogLevel level, std::string_view message, std::string_view file, std::uint32_t line) {
        flatbuffers::FlatBufferBuilder builder;
        builder.Finish(fb::CreateLogRecord(builder, level, builder.CreateString(message.data(), message.size()),
                                           builder.CreateString(file.data(), file.size()), line));
        guest_writes(std::as_bytes(std::span(builder.GetBufferPointer(), builder.GetSize())));
    }
    // What the guest reads back: the host's answer to its host call.
    protocol::call_result answer() const { return protocol::decode_result(buffers.message("answer")); }

    mem::layout layout = make_layout();
    mem::guest_memory memory = mem::guest_memory::create(layout.total_size());
    call_buffers buffers{memory, layout};
    host_services services;
    call_state call;
};

}  // namespace hl::detail::test
