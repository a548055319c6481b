// SPDX-License-Identifier: Apache-2.0
// hl::metrics: a known mix of calls on sandboxes that share one metrics object gives exactly the
// counts it should, by outcome, and the Prometheus text says the same.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;
using hl::value_type;
using namespace std::chrono_literals;
using hl::test::error_of;

class Metrics : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    hl::multi_use_sandbox make() {
        auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), hl::sandbox_config{}.set_metrics(m));
        u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
        return std::move(u).evolve();
    }

    std::shared_ptr<hl::metrics> m = std::make_shared<hl::metrics>();
};

TEST_F(Metrics, AKnownMixOfCallsIsCountedExactlyByOutcome) {
    auto sb = make();
    const auto snap = sb.snapshot();
    EXPECT_EQ(m->read().calls_total(), 0u) << "initialisation is not a call";

    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
    EXPECT_EQ(sb.call<std::int64_t>("CallHostManyTimes", 10), 55);
    EXPECT_EQ(error_of([&] { sb.call<void>("ReturnGuestError", 7, std::string("no")); }), errc::guest_error);
    EXPECT_EQ(error_of([&] { sb.call<void>("NoSuchFunction"); }), errc::unknown_function);
    EXPECT_EQ(error_of([&] { sb.call<void>("WriteNull"); }), errc::guest_fault);
    EXPECT_EQ(error_of([&] { sb.call<std::int32_t>("AddLocal", 1, 2); }), errc::poisoned);
    sb.restore(snap);
    EXPECT_EQ(error_of([&] { sb.call_for<void>(5ms, "Spin"); }), errc::timed_out);
    sb.restore(snap);
    EXPECT_EQ(error_of([&] { sb.call_for<void>(hl::call_limits{.cpu_time = 5ms}, "Spin"); }),
              errc::cpu_budget_exceeded);
    sb.restore(snap);
    // The error_code overload and a sliced call record as well.
    std::error_code ec;
    EXPECT_EQ(sb.call<std::int32_t>(ec, "AddLocal", 2, 2), 4);
    auto call =
        sb.start_call("AddLocal", value_type::int32, std::vector<hl::argument>{std::int32_t{3}, std::int32_t{3}});
    while (call.run(1ms) == hl::guest_call::status::sliced) {
    }
    // A sandbox made from the snapshot records into the same object.
    auto copy = hl::multi_use_sandbox::from_snapshot(snap);
    copy.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    EXPECT_EQ(copy.call<std::int32_t>("AddLocal", 5, 5), 10);

    const auto v = m->read();
    EXPECT_EQ(v.calls_with({}), 5u);
    EXPECT_EQ(v.calls_with(errc::guest_error), 1u);
    EXPECT_EQ(v.calls_with(errc::unknown_function), 1u);
    EXPECT_EQ(v.calls_with(errc::guest_fault), 1u);
    EXPECT_EQ(v.calls_with(errc::poisoned), 1u) << "a refused call counts too";
    EXPECT_EQ(v.calls_with(errc::timed_out), 1u);
    EXPECT_EQ(v.calls_with(errc::cpu_budget_exceeded), 1u);
    EXPECT_EQ(v.calls_total(), 11u);
    EXPECT_EQ(v.host_calls, 10u);
    EXPECT_EQ(v.system_calls, 0u);
    EXPECT_GE(v.vm_exits, 10u + 9u) << "each host call, and the end of each call that ran";
    EXPECT_EQ(v.restores, 3u);
    EXPECT_GT(v.restored_pages, 0u);
    EXPECT_EQ(v.duration.count, 10u) << "every call but the refused one ran for a while";
    EXPECT_EQ(v.cpu_time.count, 1u) << "only the budgeted call measured its CPU time";
    EXPECT_GE(v.cpu_time.sum, 5ms);
    std::uint64_t in_buckets = 0;
    for (const auto n : v.duration.counts) in_buckets += n;
    EXPECT_EQ(in_buckets, v.duration.count);
}

TEST_F(Metrics, ThePrometheusTextCarriesTheSameValues) {
    auto sb = make();
    sb.call<std::int32_t>("AddLocal", 1, 2);
    sb.call<std::int32_t>("AddLocal", 1, 2);
    EXPECT_EQ(error_of([&] { sb.call<void>("WriteNull"); }), errc::guest_fault);
    const std::string text = m->prometheus_text("hl");
    EXPECT_NE(text.find("# TYPE hl_calls_total counter\n"), std::string::npos) << text;
    EXPECT_NE(text.find("hl_calls_total{outcome=\"ok\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("hl_calls_total{outcome=\"guest_fault\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("hl_calls_total{outcome=\"cpu_budget_exceeded\"} 0\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE hl_call_duration_seconds histogram\n"), std::string::npos) << text;
    EXPECT_NE(text.find("hl_call_duration_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("hl_call_duration_seconds_count 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("hl_restores_total 0\n"), std::string::npos) << text;
    // Every line is a comment or "name[{labels}] value".
    std::size_t start = 0;
    while (start < text.size()) {
        const std::size_t end = text.find('\n', start);
        ASSERT_NE(end, std::string::npos) << "the text ends with a newline";
        const std::string line = text.substr(start, end - start);
        if (line[0] != '#') {
            EXPECT_NE(line.find(' '), std::string::npos) << line;
        }
        start = end + 1;
    }
}

TEST_F(Metrics, AnAbandonedCallCountsAsCancelledAndABadPrefixIsRefused) {
    auto sb = make();
    {
        auto spin = sb.start_call("Spin", value_type::void_type, {});
        EXPECT_EQ(spin.run(1ms), hl::guest_call::status::sliced);
    }  // destroyed unfinished
    EXPECT_EQ(m->read().calls_with(errc::cancelled), 1u);
    EXPECT_EQ(m->read().calls_total(), sb.usage().calls);
    EXPECT_EQ(error_of([&] { m->prometheus_text(std::string(300, 'x')); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { m->prometheus_text("9lives"); }), errc::usage_error);
    EXPECT_EQ(error_of([&] { m->prometheus_text("has space"); }), errc::usage_error);
}

TEST_F(Metrics, HistogramBucketsFollowPrometheusUpperBounds) {
    hl::metrics local;
    local.record_call({}, std::chrono::microseconds(2), {});   // le 2 us: bucket 0
    local.record_call({}, std::chrono::nanoseconds(2001), {});  // past 2 us: bucket 1 (le 4 us)
    local.record_call({}, std::chrono::microseconds(4), {});   // bucket 1
    local.record_call({}, std::chrono::microseconds(5), {});   // bucket 2 (le 8 us)
    const auto h = local.read().duration;
    EXPECT_EQ(h.counts[0], 1u);
    EXPECT_EQ(h.counts[1], 2u);
    EXPECT_EQ(h.counts[2], 1u);
}

TEST_F(Metrics, ManyThreadsRecordIntoOneObjectWithoutLosingCounts) {
    constexpr int threads = 4, calls = 50;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            auto sb = make();
            for (int i = 0; i < calls; ++i) sb.call<std::int32_t>("AddLocal", i, 1);
        });
    }
    for (auto& t : pool) t.join();
    EXPECT_EQ(m->read().calls_with({}), std::uint64_t{threads * calls});
}

}  // namespace
