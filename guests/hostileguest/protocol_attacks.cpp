// SPDX-License-Identifier: Apache-2.0
// Breaks the wire protocol: sizes, bytes and ports the host must refuse with a clear error.
#include <cstdint>
#include <cstring>
#include <string>

#include "hl/abi/hl_generated.h"

#include "hostile.hpp"

namespace {

using namespace hostile;

// A host call whose size claims more than the output buffer holds.
void host_call_too_big() {
    set_output(hl_get_peb()->output_size, 0);
    out32(HL_PORT_HOST_CALL, 0);
}

// A host call that is not a FlatBuffer at all.
void host_call_garbage() {
    set_output(64, 0xab);
    out32(HL_PORT_HOST_CALL, 0);
}

// A host call whose root offset points far outside the message.
void host_call_offsets_outside() {
    set_output(16, 0);
    const std::uint32_t root = 0x7fff'fff0;
    std::memcpy(output() + HL_BUFFER_HEADER_SIZE, &root, sizeof root);
    out32(HL_PORT_HOST_CALL, 0);
}

// HostAdd with two strings instead of two int32s; returns the host's error message.
std::string wrong_types_to_host() {
    auto r = hl::guest::call_host<std::int32_t>("HostAdd", "one", "two");
    return r ? "no error" : r.error().message;
}

// An abort message far longer than any buffer.
void huge_abort() {
    std::string message(1 << 20, 'A');
    hl_abort(7, message.c_str());
}

// Finishes the call itself with a result size larger than the output buffer.
void result_too_big() {
    set_output(~0ull, 0);
    out32(HL_PORT_DONE, HL_STATUS_OK);
}

// Finishes the call itself with bytes that are not a FunctionCallResult.
void result_garbage() {
    set_output(32, 0x5a);
    out32(HL_PORT_DONE, HL_STATUS_OK);
}

void unknown_port() { out32(0x101, 1); }

void unknown_output_kind() {
    set_output(4, 'x');
    out32(HL_PORT_OUTPUT, 9);
}

void log_garbage() {
    set_output(16, 0xee);
    out32(HL_PORT_OUTPUT, HL_OUTPUT_LOG);
}

std::int32_t read_port() {
    std::uint32_t value;
    __asm__ volatile("inl %w1, %0" : "=a"(value) : "Nd"(static_cast<std::uint16_t>(HL_PORT_DONE)));
    return static_cast<std::int32_t>(value);
}

void forbidden_port() { out32(0x80, 1); }

void done_with_failure() { out32(HL_PORT_DONE, 5); }

// Writes over the whole output buffer, then returns normally: the SDK's result must still arrive.
std::int32_t scribble_then_return() {
    set_output(hl_get_peb()->output_size - HL_BUFFER_HEADER_SIZE, 0xff);
    return 42;
}

// Sends a trace-level log record straight to the port, skipping the SDK's level filter.
void log_below_level() {
    flatbuffers::FlatBufferBuilder b(128);
    b.Finish(hl::fb::CreateLogRecord(b, hl::fb::LogLevel::Trace, b.CreateString("sneaky"), b.CreateString("x.c"), 1));
    const std::uint64_t size = b.GetSize();
    std::memcpy(output(), &size, sizeof size);
    std::memcpy(output() + HL_BUFFER_HEADER_SIZE, b.GetBufferPointer(), size);
    out32(HL_PORT_OUTPUT, HL_OUTPUT_LOG);
}

}  // namespace

void hostile::register_protocol_attacks() {
    using hl::guest::register_function;
    register_function<host_call_too_big>("HostCallTooBig");
    register_function<host_call_garbage>("HostCallGarbage");
    register_function<host_call_offsets_outside>("HostCallOffsetsOutside");
    register_function<wrong_types_to_host>("WrongTypesToHost");
    register_function<huge_abort>("HugeAbort");
    register_function<result_too_big>("ResultTooBig");
    register_function<result_garbage>("ResultGarbage");
    register_function<unknown_port>("UnknownPort");
    register_function<unknown_output_kind>("UnknownOutputKind");
    register_function<log_garbage>("LogGarbage");
    register_function<read_port>("ReadPort");
    register_function<forbidden_port>("ForbiddenPort");
    register_function<done_with_failure>("DoneWithFailure");
    register_function<scribble_then_return>("ScribbleThenReturn");
    register_function<log_below_level>("LogBelowLevel");
}
