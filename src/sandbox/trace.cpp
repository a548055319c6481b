// SPDX-License-Identifier: Apache-2.0
#include "hl/trace.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

namespace hl {
namespace {

// The length of the well-formed UTF-8 sequence at the start of `s`, 0 if it is not one (RFC 3629:
// no overlong forms, no surrogates, nothing past U+10FFFF).
std::size_t utf8_length(std::string_view s) noexcept {
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
    const unsigned char c = b(0);
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(1) || !cont(2)) return 0;
        if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;
        return 4;
    }
    return 0;
}

// JSON string contents: quotes, backslashes and control characters escaped, and every byte that is
// not part of well-formed UTF-8 (a guest's name, or one cut in the middle of a character) replaced
// by U+FFFD, so that the document stays valid JSON.
void append_escaped(std::string& out, std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        const std::size_t n = utf8_length(s.substr(i));
        if (n == 0) {
            out += "\\ufffd";
            ++i;
        } else if (c == '"' || c == '\\') {
            out += '\\';
            out += s[i++];
        } else if (c < 0x20 || c == 0x7F) {
            char code[8];
            std::snprintf(code, sizeof code, "\\u%04x", c);
            out += code;
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
}

void append_micros(std::string& out, std::int64_t ns) {
    char number[32];
    std::snprintf(number, sizeof number, "%.3f", static_cast<double>(ns) / 1e3);
    out += number;
}

}  // namespace

void trace_recorder::start(std::uint64_t calls) {
    std::lock_guard lock(mutex_);
    events_.clear();
    dropped_ = 0;
    calls_left_ = calls;
    recording_.store(true, std::memory_order_relaxed);
}

void trace_recorder::record(event e, bool ends_call) {
    std::lock_guard lock(mutex_);
    if (!recording_.load(std::memory_order_relaxed)) return;
    if (events_.size() >= max_events_) {
        ++dropped_;
        recording_.store(false, std::memory_order_relaxed);
        return;
    }
    events_.push_back(std::move(e));
    if (ends_call && calls_left_ != 0 && --calls_left_ == 0) recording_.store(false, std::memory_order_relaxed);
}

std::vector<trace_recorder::event> trace_recorder::events() const {
    std::lock_guard lock(mutex_);
    return events_;
}

std::uint64_t trace_recorder::dropped() const noexcept {
    std::lock_guard lock(mutex_);
    return dropped_;
}

std::string trace_recorder::chrome_json() const {
    std::vector<event> all = events();
    std::sort(all.begin(), all.end(), [](const event& a, const event& b) { return a.start_ns < b.start_ns; });
    const std::int64_t origin = all.empty() ? 0 : all.front().start_ns;
    std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[";
    std::set<std::uint64_t> sandboxes;
    bool first = true;
    for (const auto& e : all) {
        sandboxes.insert(e.sandbox);
        if (!first) out += ',';
        first = false;
        out += "\n{\"name\":\"";
        append_escaped(out, e.name);
        out += "\",\"cat\":\"hyperlight\",\"ph\":\"X\",\"ts\":";
        append_micros(out, e.start_ns - origin);
        out += ",\"dur\":";
        append_micros(out, e.duration_ns);
        out += ",\"pid\":1,\"tid\":" + std::to_string(e.sandbox) + ",\"args\":{\"thread\":" + std::to_string(e.thread);
        if (!e.detail.empty()) {
            out += ",\"detail\":\"";
            append_escaped(out, e.detail);
            out += '"';
        }
        out += "}}";
    }
    for (const auto id : sandboxes) {
        if (!first) out += ',';
        first = false;
        out += "\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":" + std::to_string(id) +
               ",\"args\":{\"name\":\"sandbox " + std::to_string(id) + "\"}}";
    }
    out += "\n]}\n";
    return out;
}

}  // namespace hl
