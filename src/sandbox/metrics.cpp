// SPDX-License-Identifier: Apache-2.0
#include "hl/metrics.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>

namespace hl {
namespace {

constexpr auto relaxed = std::memory_order_relaxed;

// The first bucket whose upper bound, 2^(i+1) us, the value does not exceed (Prometheus's `le`).
std::size_t bucket_of(std::chrono::nanoseconds value) noexcept {
    const auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(1, (value.count() + 999) / 1000));
    const std::size_t i = us <= 2 ? 0 : std::bit_width(us - 1) - 1;
    return std::min<std::size_t>(i, metrics::buckets - 1);
}

bool valid_prefix(std::string_view p) noexcept {
    if (p.empty() || p.size() > 64) return false;
    for (std::size_t i = 0; i < p.size(); ++i) {
        const char c = p[i];
        const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

std::size_t outcome_of(std::error_code code) noexcept {
    if (!code) return 0;
    if (code.category() == error_category() && code.value() > 0 &&
        static_cast<std::size_t>(code.value()) < metrics::outcomes - 1) {
        return static_cast<std::size_t>(code.value());
    }
    return metrics::outcomes - 1;
}

void append(std::string& out, const char* format, auto... values) {
    char line[256];
    const int n = std::snprintf(line, sizeof line, format, values...);
    if (n > 0) out.append(line, std::min<std::size_t>(static_cast<std::size_t>(n), sizeof line - 1));
}

void append_histogram(std::string& out, const std::string& name, const char* help, const metrics::histogram& h) {
    append(out, "# HELP %s %s\n# TYPE %s histogram\n", name.c_str(), help, name.c_str());
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i + 1 < metrics::buckets; ++i) {
        cumulative += h.counts[i];
        const double upper = static_cast<double>(std::uint64_t{2} << i) / 1e6;  // 2^(i+1) us, in seconds
        append(out, "%s_bucket{le=\"%.6g\"} %llu\n", name.c_str(), upper, static_cast<unsigned long long>(cumulative));
    }
    append(out, "%s_bucket{le=\"+Inf\"} %llu\n", name.c_str(), static_cast<unsigned long long>(h.count));
    append(out, "%s_sum %.9f\n%s_count %llu\n", name.c_str(), static_cast<double>(h.sum.count()) / 1e9, name.c_str(),
           static_cast<unsigned long long>(h.count));
}

void append_counter(std::string& out, const std::string& name, const char* help, std::uint64_t value) {
    append(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name.c_str(), help, name.c_str(), name.c_str(),
           static_cast<unsigned long long>(value));
}

}  // namespace

void metrics::atomic_histogram::add(std::chrono::nanoseconds value) noexcept {
    counts[bucket_of(value)].fetch_add(1, relaxed);
    count.fetch_add(1, relaxed);
    sum_ns.fetch_add(value.count(), relaxed);
}

metrics::histogram metrics::atomic_histogram::read() const noexcept {
    histogram h;
    for (std::size_t i = 0; i < buckets; ++i) h.counts[i] = counts[i].load(relaxed);
    h.count = count.load(relaxed);
    h.sum = std::chrono::nanoseconds(sum_ns.load(relaxed));
    return h;
}

void metrics::record_call(std::error_code outcome, std::chrono::nanoseconds duration, const call_usage& used) noexcept {
    calls_[outcome_of(outcome)].fetch_add(1, relaxed);
    duration_.add(duration);
    if (used.cpu_time.count() > 0) cpu_time_.add(used.cpu_time);
    if (used.vm_exits != 0) vm_exits_.fetch_add(used.vm_exits, relaxed);
    if (used.host_calls != 0) host_calls_.fetch_add(used.host_calls, relaxed);
    if (used.system_calls != 0) system_calls_.fetch_add(used.system_calls, relaxed);
}

void metrics::record_refused(std::error_code outcome) noexcept { calls_[outcome_of(outcome)].fetch_add(1, relaxed); }

void metrics::record_restore(std::uint64_t pages) noexcept {
    restores_.fetch_add(1, relaxed);
    restored_pages_.fetch_add(pages, relaxed);
}

metrics::values metrics::read() const noexcept {
    values v;
    for (std::size_t i = 0; i < outcomes; ++i) v.calls[i] = calls_[i].load(relaxed);
    v.duration = duration_.read();
    v.cpu_time = cpu_time_.read();
    v.vm_exits = vm_exits_.load(relaxed);
    v.host_calls = host_calls_.load(relaxed);
    v.system_calls = system_calls_.load(relaxed);
    v.restores = restores_.load(relaxed);
    v.restored_pages = restored_pages_.load(relaxed);
    return v;
}

std::uint64_t metrics::values::calls_total() const noexcept {
    std::uint64_t n = 0;
    for (const auto c : calls) n += c;
    return n;
}

std::uint64_t metrics::values::calls_with(std::error_code code) const noexcept { return calls[outcome_of(code)]; }

std::string_view metrics::outcome_name(std::size_t outcome) noexcept {
    if (outcome == 0) return "ok";
    switch (static_cast<errc>(outcome)) {
    case errc::guest_error: return "guest_error";
    case errc::guest_aborted: return "guest_aborted";
    case errc::guest_fault: return "guest_fault";
    case errc::stack_overflow: return "stack_overflow";
    case errc::cancelled: return "cancelled";
    case errc::timed_out: return "timed_out";
    case errc::poisoned: return "poisoned";
    case errc::unknown_function: return "unknown_function";
    case errc::parameter_mismatch: return "parameter_mismatch";
    case errc::return_type_mismatch: return "return_type_mismatch";
    case errc::argument_too_large: return "argument_too_large";
    case errc::result_too_large: return "result_too_large";
    case errc::protocol_error: return "protocol_error";
    case errc::out_of_memory: return "out_of_memory";
    case errc::kvm_unavailable: return "kvm_unavailable";
    case errc::invalid_config: return "invalid_config";
    case errc::invalid_guest: return "invalid_guest";
    case errc::host_function_error: return "host_function_error";
    case errc::handler_error: return "handler_error";
    case errc::vm_error: return "vm_error";
    case errc::snapshot_mismatch: return "snapshot_mismatch";
    case errc::pool_busy: return "pool_busy";
    case errc::pool_closed: return "pool_closed";
    case errc::usage_error: return "usage_error";
    case errc::cpu_budget_exceeded: return "cpu_budget_exceeded";
    }
    return "other";
}

std::string metrics::prometheus_text(std::string_view prefix) const {
    if (!valid_prefix(prefix)) {
        throw error(errc::usage_error, "a metrics prefix is 1 to 64 characters of [a-zA-Z_:], then also digits");
    }
    const values v = read();
    const std::string p(prefix);
    std::string out;
    out.reserve(8192);
    const std::string calls = p + "_calls_total";
    append(out, "# HELP %s Guest calls by outcome.\n# TYPE %s counter\n", calls.c_str(), calls.c_str());
    for (std::size_t i = 0; i < outcomes; ++i) {
        const std::string_view name = outcome_name(i);
        append(out, "%s{outcome=\"%.*s\"} %llu\n", calls.c_str(), static_cast<int>(name.size()), name.data(),
               static_cast<unsigned long long>(v.calls[i]));
    }
    append_histogram(out, p + "_call_duration_seconds", "Wall-clock duration of guest calls.", v.duration);
    append_histogram(out, p + "_call_cpu_seconds", "CPU time of guest calls whose CPU time was measured.",
                     v.cpu_time);
    append_counter(out, p + "_vm_exits_total", "Times a vCPU left the guest during calls.", v.vm_exits);
    append_counter(out, p + "_host_calls_total", "Host functions called by guests.", v.host_calls);
    append_counter(out, p + "_system_calls_total", "Linux system calls served for guests.", v.system_calls);
    append_counter(out, p + "_restores_total", "Snapshot restores.", v.restores);
    append_counter(out, p + "_restored_pages_total", "Pages copied or zeroed by restores.", v.restored_pages);
    return out;
}

}  // namespace hl
