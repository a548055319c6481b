// SPDX-License-Identifier: Apache-2.0
// Guest text and log output. Text accumulates in the output buffer itself and goes to the host a line
// at a time (or when the buffer is full); every other use of the output buffer flushes it first.
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "hl/abi/hl_generated.h"
#include "hl/guest.h"
#include "io.hpp"

namespace hl::guest::detail {
namespace {

std::size_t pending = 0;  // bytes of text waiting in the output buffer

unsigned char* text_area() { return reinterpret_cast<unsigned char*>(peb().output_addr + HL_BUFFER_HEADER_SIZE); }
std::size_t text_capacity() { return peb().output_size - HL_BUFFER_HEADER_SIZE; }

// The SDK's own printf (the freestanding flavour); a Linux flavour prints through the libc.
[[maybe_unused]] void put(const char* data, std::size_t len) {
    const std::size_t capacity = text_capacity();
    for (std::size_t i = 0; i < len; ++i) {
        text_area()[pending++] = static_cast<unsigned char>(data[i]);
        if (data[i] == '\n' || pending == capacity) flush_output();
    }
}

// Formats into a stack buffer, or the heap when the text is longer; calls sink(text, len).
template <class Sink>
int format(const char* fmt, va_list args, Sink sink) {
    char small[512];
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(small, sizeof small, fmt, copy);
    va_end(copy);
    if (n < 0) return n;
    if (static_cast<std::size_t>(n) < sizeof small) {
        sink(small, static_cast<std::size_t>(n));
        return n;
    }
    char* big = static_cast<char*>(std::malloc(static_cast<std::size_t>(n) + 1));
    if (big == nullptr) hl_abort(HL_ABORT_OUT_OF_MEMORY, "out of memory formatting output");
    std::vsnprintf(big, static_cast<std::size_t>(n) + 1, fmt, args);
    sink(big, static_cast<std::size_t>(n));
    std::free(big);
    return n;
}

}  // namespace

void flush_output() {
    if (pending == 0) return;
    const hl_buffer_header header{pending};
    std::memcpy(reinterpret_cast<void*>(peb().output_addr), &header, sizeof header);
    pending = 0;
    out32(HL_PORT_OUTPUT, HL_OUTPUT_PRINT);
}

}  // namespace hl::guest::detail

using hl::guest::detail::format;
using hl::guest::detail::put;

extern "C" {

void hl_flush_output(void) { hl::guest::detail::flush_output(); }

#ifndef HL_GUEST_LINUX  // a Linux flavour's printf is the libc's, to stdout (a system call to the host)
int vprintf(const char* fmt, va_list args) { return format(fmt, args, put); }

int printf(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    const int n = vprintf(fmt, args);
    va_end(args);
    return n;
}

int puts(const char* s) {
    const std::size_t len = std::strlen(s);
    put(s, len);
    put("\n", 1);
    return static_cast<int>(len + 1);
}

int putchar(int c) {
    const char ch = static_cast<char>(c);
    put(&ch, 1);
    return static_cast<unsigned char>(ch);
}
#endif

bool hl_log_enabled(hl_log_level level) {
    return static_cast<std::uint32_t>(level) >= hl::guest::detail::peb().log_level;
}

void hl_log(hl_log_level level, const char* file, std::uint32_t line, const char* fmt, ...) {
    if (static_cast<std::uint32_t>(level) > HL_LOG_CRITICAL) level = HL_LOG_CRITICAL;
    if (!hl_log_enabled(level)) return;
    va_list args;
    va_start(args, fmt);
    format(fmt, args, [&](const char* text, std::size_t len) {
        namespace fb = hl::fb;
        using namespace hl::guest::detail;
        flush_output();
        // A record must fit the output buffer: cut the message (never the file name) to make it fit.
        const std::size_t file_len = file ? std::strlen(file) : 0;
        const std::size_t overhead = 128 + file_len;
        const std::size_t room = text_capacity() > overhead ? text_capacity() - overhead : 0;
        if (len > room) len = room;
        flatbuffers::FlatBufferBuilder b(len + overhead);
        auto message = b.CreateString(text, len);
        auto where = b.CreateString(file ? file : "", file_len);
        b.Finish(fb::CreateLogRecord(b, static_cast<fb::LogLevel>(level), message, where, line));
        if (!write_output(b.GetBufferPointer(), b.GetSize())) return;  // a file name longer than the buffer
        out32(HL_PORT_OUTPUT, HL_OUTPUT_LOG);
    });
    va_end(args);
}
}
