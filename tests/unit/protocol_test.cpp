// SPDX-License-Identifier: Apache-2.0
#include "protocol/codec.hpp"

#include <gtest/gtest.h>

#include <limits>

#include "hl/abi/hl_generated.h"
#include "hl/error.hpp"

namespace {

using namespace hl;
using namespace hl::protocol;

TEST(Protocol, RoundTripsACallWithOneArgumentOfEveryType) {
    flatbuffers::FlatBufferBuilder b;
    const std::vector<std::uint8_t> bytes{1, 2, 3};
    const argument args[] = {std::int32_t{-5},
                             std::uint32_t{7},
                             std::numeric_limits<std::int64_t>::min(),
                             std::numeric_limits<std::uint64_t>::max(),
                             1.5f,
                             -2.25,
                             true,
                             std::string_view("text"),
                             std::span<const std::uint8_t>(bytes)};
    const auto msg = encode_call(b, "Everything", value_type::string, args);
    const auto call = decode_call(msg);
    EXPECT_EQ(call.function_name, "Everything");
    EXPECT_EQ(call.expected_return, value_type::string);
    ASSERT_EQ(call.arguments.size(), std::size(args));
    for (std::size_t i = 0; i < std::size(args); ++i) {
        EXPECT_EQ(type_of(call.arguments[i]), type_of(args[i])) << i;
    }
    EXPECT_EQ(std::get<std::int64_t>(call.arguments[2]), std::numeric_limits<std::int64_t>::min());
    EXPECT_EQ(std::get<std::string_view>(call.arguments[7]), "text");
    const auto got = std::get<std::span<const std::uint8_t>>(call.arguments[8]);
    EXPECT_EQ(std::vector<std::uint8_t>(got.begin(), got.end()), bytes);
}

TEST(Protocol, RoundTripsEveryKindOfResult) {
    flatbuffers::FlatBufferBuilder b;
    const return_value values[] = {std::monostate{},  std::int32_t{1}, std::uint32_t{2},   std::int64_t{3},
                                   std::uint64_t{4},  5.0f,            6.0,                false,
                                   std::string("s"), std::vector<std::uint8_t>{9, 8}};
    for (const auto& v : values) {
        const auto r = decode_result(encode_result(b, v));
        EXPECT_FALSE(r.error);
        EXPECT_EQ(r.value, v);
    }
}

TEST(Protocol, RoundTripsAGuestError) {
    flatbuffers::FlatBufferBuilder b;
    const auto r = decode_result(encode_error(b, {guest_error_kind::function_not_found, 42, "nope"}));
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::function_not_found);
    EXPECT_EQ(r.error->code, 42);
    EXPECT_EQ(r.error->message, "nope");
}

TEST(Protocol, RejectsMoreThanThirtyTwoArguments) {
    flatbuffers::FlatBufferBuilder b;
    const std::vector<argument> args(33, argument{std::int32_t{0}});
    EXPECT_THROW(encode_call(b, "f", value_type::void_type, args), hl::error);
}

void expect_protocol_error(std::span<const std::byte> bytes) {
    try {
        (void)decode_result(bytes);
        FAIL() << "accepted " << bytes.size() << " bytes";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::protocol_error);
    }
}

TEST(Protocol, RejectsBytesThatAreNotAFlatBuffer) {
    expect_protocol_error({});
    const std::vector<std::byte> junk(64, std::byte{0xff});
    expect_protocol_error(junk);
    std::vector<std::byte> zeros(64);
    expect_protocol_error(zeros);
}

TEST(Protocol, RejectsEveryTruncationOfAValidResult) {
    flatbuffers::FlatBufferBuilder b;
    const auto msg = encode_result(b, std::string("hello world"));
    for (std::size_t n = 0; n < msg.size(); ++n) {
        try {
            (void)decode_result(msg.first(n));
        } catch (const hl::error& e) {
            EXPECT_EQ(e.code(), errc::protocol_error);
        }
    }
}

TEST(Protocol, SurvivesRandomCorruptionOfAResult) {
    flatbuffers::FlatBufferBuilder b;
    const auto original = encode_result(b, std::vector<std::uint8_t>(100, 7));
    std::vector<std::byte> msg(original.begin(), original.end());
    std::uint32_t seed = 12345;
    for (int i = 0; i < 20000; ++i) {
        auto copy = msg;
        for (int k = 0; k < 3; ++k) {
            seed = seed * 1664525 + 1013904223;
            copy[seed % copy.size()] = static_cast<std::byte>(seed >> 24);
        }
        try {
            (void)decode_result(copy);
        } catch (const hl::error& e) {
            ASSERT_EQ(e.code(), errc::protocol_error);
        }
    }
}

TEST(Protocol, RejectsAResultWithNeitherValueNorError) {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(hl::fb::CreateFunctionCallResult(b));
    expect_protocol_error({reinterpret_cast<const std::byte*>(b.GetBufferPointer()), b.GetSize()});
}

}  // namespace

namespace {

TEST(Protocol, RejectsAResultThatNamesATypeButHoldsNoValue) {
    flatbuffers::FlatBufferBuilder b;
    b.Finish(hl::fb::CreateFunctionCallResult(b, hl::fb::ReturnValue::hlulong, 0));
    expect_protocol_error({reinterpret_cast<const std::byte*>(b.GetBufferPointer()), b.GetSize()});
}

TEST(Protocol, SurvivesRandomCorruptionOfACall) {
    flatbuffers::FlatBufferBuilder b;
    const std::vector<std::uint8_t> bytes(40, 3);
    const argument args[] = {std::int32_t{1}, std::string_view("abc"), std::span<const std::uint8_t>(bytes), 2.0};
    const auto original = encode_call(b, "Function", value_type::int64, args);
    const std::vector<std::byte> msg(original.begin(), original.end());
    std::uint32_t seed = 777;
    for (int i = 0; i < 20000; ++i) {
        auto copy = msg;
        for (int k = 0; k < 3; ++k) {
            seed = seed * 1664525 + 1013904223;
            copy[seed % copy.size()] = static_cast<std::byte>(seed >> 24);
        }
        try {
            const auto call = decode_call(copy);
            for (const auto& a : call.arguments) (void)type_of(a);
        } catch (const hl::error& e) {
            ASSERT_EQ(e.code(), errc::protocol_error);
        }
    }
}

}  // namespace
