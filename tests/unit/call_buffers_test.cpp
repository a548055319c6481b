// SPDX-License-Identifier: Apache-2.0
#include "sandbox/call_buffers.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hl/abi/hl_abi.h"
#include "hl/config.hpp"
#include "hl/error.hpp"
#include "sandbox/poisoning.hpp"

namespace hl::detail {
namespace {

using protocol::guest_error_kind;

constexpr std::uint64_t buffer_size = 4096;

class CallBuffers : public ::testing::Test {
protected:
    static mem::layout make_layout() {
        sandbox_config config;
        config.input_buffer_size = buffer_size;
        config.output_buffer_size = buffer_size;
        return mem::layout::compute(config, mem::page_size);
    }

    // What the guest does: a header claiming `size`, then `bytes`.
    void guest_writes_output(std::uint64_t size, std::span<const std::byte> bytes = {}) {
        memory.write(layout.output(), hl_buffer_header{size});
        memory.write_bytes(layout.output() + HL_BUFFER_HEADER_SIZE, bytes);
    }
    std::span<const std::byte> input_message() const {
        const auto size = memory.read<hl_buffer_header>(layout.input()).size;
        return memory.span(layout.input() + HL_BUFFER_HEADER_SIZE, size);
    }
    std::span<const std::byte> output_message() const {
        const auto size = memory.read<hl_buffer_header>(layout.output()).size;
        return memory.span(layout.output() + HL_BUFFER_HEADER_SIZE, size);
    }

    mem::layout layout = make_layout();
    mem::guest_memory memory = mem::guest_memory::create(layout.total_size());
    call_buffers buffers{memory, layout};
};

TEST_F(CallBuffers, CapacitiesAreTheBuffersLessTheirHeaders) {
    EXPECT_EQ(buffers.input_capacity(), buffer_size - HL_BUFFER_HEADER_SIZE);
    EXPECT_EQ(buffers.output_capacity(), buffer_size - HL_BUFFER_HEADER_SIZE);
}

TEST_F(CallBuffers, WritesACallTheGuestCanDecode) {
    const argument args[] = {std::int32_t{7}, std::string_view("seven")};
    buffers.write_call("Echo", value_type::string, args);
    const auto call = protocol::decode_call(input_message());
    EXPECT_EQ(call.function_name, "Echo");
    EXPECT_EQ(call.expected_return, value_type::string);
    ASSERT_EQ(call.arguments.size(), 2u);
    EXPECT_EQ(std::get<std::int32_t>(call.arguments[0]), 7);
    EXPECT_EQ(std::get<std::string_view>(call.arguments[1]), "seven");
    EXPECT_TRUE(memory.host_written().test(layout.input().value / mem::page_size))
        << "a restore must know the host wrote the input buffer";
}

TEST_F(CallBuffers, RefusesACallLargerThanTheInputBufferAndWritesNothing) {
    buffers.write_call("First", value_type::void_type, {});
    const std::string big(buffer_size, 'x');
    const argument args[] = {std::string_view(big)};
    try {
        buffers.write_call("Big", value_type::void_type, args);
        FAIL() << "no exception";
    } catch (const error& e) {
        EXPECT_EQ(e.code(), errc::argument_too_large);
        EXPECT_NE(std::string(e.what()).find("the input buffer holds 4088"), std::string::npos) << e.what();
    }
    EXPECT_EQ(protocol::decode_call(input_message()).function_name, "First");
}

TEST_F(CallBuffers, ReadsAsManyBytesAsTheHeaderSays) {
    const std::byte bytes[] = {std::byte{1}, std::byte{2}, std::byte{3}};
    guest_writes_output(2, bytes);
    const auto message = buffers.message("test");
    ASSERT_EQ(message.size(), 2u);
    EXPECT_EQ(message[1], std::byte{2});
}

TEST_F(CallBuffers, AMessageMayFillTheWholeBuffer) {
    guest_writes_output(buffers.output_capacity());
    EXPECT_EQ(buffers.message("test").size(), buffers.output_capacity());
}

TEST_F(CallBuffers, AHeaderClaimingMoreThanTheBufferPoisons) {
    for (const std::uint64_t size : {buffers.output_capacity() + 1, std::numeric_limits<std::uint64_t>::max()}) {
        guest_writes_output(size);
        try {
            buffers.message("host call");
            FAIL() << "no exception for " << size;
        } catch (const poisoning& p) {
            EXPECT_EQ(p.failure(), errc::protocol_error);
            EXPECT_EQ(p.code(), errc::protocol_error);
            EXPECT_NE(p.reason().find("host call claims"), std::string::npos) << p.reason();
            EXPECT_NE(p.reason().find("output buffer holds 4088"), std::string::npos) << p.reason();
        }
    }
}

TEST_F(CallBuffers, APrefixIsCutToTheLimitAndToTheBufferWhateverTheHeaderClaims) {
    guest_writes_output(100);
    EXPECT_EQ(buffers.message_prefix(10).size(), 10u);
    EXPECT_EQ(buffers.message_prefix(1000).size(), 100u);
    guest_writes_output(std::numeric_limits<std::uint64_t>::max());
    EXPECT_EQ(buffers.message_prefix(std::numeric_limits<std::uint64_t>::max()).size(), buffers.output_capacity());
}

TEST_F(CallBuffers, RepliesWithAValue) {
    buffers.reply(return_value{std::int64_t{-3}});
    const auto result = protocol::decode_result(output_message());
    EXPECT_FALSE(result.error);
    EXPECT_EQ(result.value, return_value{std::int64_t{-3}});
}

TEST_F(CallBuffers, RepliesWithResultTooLargeForAValueThatDoesNotFit) {
    buffers.reply(return_value{std::string(buffer_size, 'v')});
    const auto result = protocol::decode_result(output_message());
    ASSERT_TRUE(result.error);
    EXPECT_EQ(result.error->kind, guest_error_kind::result_too_large);
    EXPECT_NE(result.error->message.find("output_buffer_size"), std::string::npos) << result.error->message;
}

TEST_F(CallBuffers, RepliesWithAnError) {
    buffers.reply_error(guest_error_kind::host_function_error, "it broke");
    const auto result = protocol::decode_result(output_message());
    ASSERT_TRUE(result.error);
    EXPECT_EQ(result.error->kind, guest_error_kind::host_function_error);
    EXPECT_EQ(result.error->message, "it broke");
}

TEST_F(CallBuffers, CutsAnErrorTextTooLongForTheBufferAndSaysSo) {
    const std::string text = "failed: " + std::string(2 * buffer_size, 'e');
    buffers.reply_error(guest_error_kind::host_function_error, text);
    EXPECT_LE(output_message().size(), buffers.output_capacity());
    const auto result = protocol::decode_result(output_message());
    ASSERT_TRUE(result.error);
    EXPECT_EQ(result.error->kind, guest_error_kind::host_function_error) << "not result_too_large";
    EXPECT_EQ(result.error->message.substr(0, 8), "failed: ");
    EXPECT_EQ(result.error->message.substr(result.error->message.size() - 3), "...");
    EXPECT_LT(result.error->message.size(), text.size());
}

}  // namespace
}  // namespace hl::detail
