// SPDX-License-Identifier: Apache-2.0
#include "hl/trace.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

namespace hl {
namespace {

// JSON string contents: quotes, backslashes and control characters escaped.
void append_escaped(std::string& out, std::string_view s) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20) {
            char code[8];
            std::snprintf(code, sizeof code, "\\u%04x", c);
            out += code;
        } else {
            out += ch;
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
