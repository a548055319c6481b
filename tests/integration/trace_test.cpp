// SPDX-License-Identifier: Apache-2.0
// hl::trace_recorder: a known call leaves its events in order and nested, on its sandbox's track;
// nothing is recorded while the recorder is stopped; a limit on calls stops it by itself; the
// Chrome trace-event JSON has every event.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"
#include "hl/trace.hpp"

namespace {

using hl::errc;
using event = hl::trace_recorder::event;
using namespace std::chrono_literals;
using hl::test::error_of;

class Trace : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    hl::multi_use_sandbox make() {
        auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), hl::sandbox_config{}.set_trace(t));
        u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
        return std::move(u).evolve();
    }

    std::vector<event> named(const std::string& prefix) const {
        std::vector<event> out;
        for (const auto& e : t->events()) {
            if (e.name.starts_with(prefix)) out.push_back(e);
        }
        return out;
    }

    std::shared_ptr<hl::trace_recorder> t = std::make_shared<hl::trace_recorder>();
};

bool inside(const event& inner, const event& outer) {
    return inner.start_ns >= outer.start_ns &&
           inner.start_ns + inner.duration_ns <= outer.start_ns + outer.duration_ns;
}

TEST_F(Trace, AKnownCallHasItsEventsInOrderAndNested) {
    auto sb = make();
    const auto snap = sb.snapshot();
    sb.call<std::int32_t>("AddLocal", 1, 1);
    EXPECT_TRUE(t->events().empty()) << "nothing is recorded before start()";

    t->start();
    EXPECT_EQ(sb.call<std::int64_t>("CallHostManyTimes", 2), 3);
    sb.restore(snap);
    t->stop();
    sb.call<std::int32_t>("AddLocal", 1, 1);  // after stop(): not recorded

    const auto calls = named("call ");
    ASSERT_EQ(calls.size(), 1u);
    EXPECT_EQ(calls[0].name, "call CallHostManyTimes");
    EXPECT_EQ(calls[0].detail, "ok");
    const auto runs = named("run");
    ASSERT_EQ(runs.size(), 1u) << "a synchronous call is one run";
    EXPECT_TRUE(inside(runs[0], calls[0]));
    const auto hosts = named("host_call");
    ASSERT_EQ(hosts.size(), 2u);
    EXPECT_EQ(hosts[0].name, "host_call HostAdd");
    EXPECT_TRUE(inside(hosts[0], runs[0]));
    EXPECT_TRUE(inside(hosts[1], runs[0]));
    EXPECT_LE(hosts[0].start_ns + hosts[0].duration_ns, hosts[1].start_ns) << "the first host call ends first";
    const auto restores = named("restore");
    ASSERT_EQ(restores.size(), 1u);
    EXPECT_GE(restores[0].start_ns, calls[0].start_ns + calls[0].duration_ns);
    EXPECT_NE(restores[0].detail.find(" pages"), std::string::npos);
    for (const auto& e : t->events()) EXPECT_EQ(e.sandbox, calls[0].sandbox) << e.name;
    EXPECT_EQ(t->events().size(), 5u);
}

TEST_F(Trace, FailuresAndSlicesAreRecordedWithTheirOutcome) {
    auto sb = make();
    const auto snap = sb.snapshot();
    t->start();
    EXPECT_EQ(error_of([&] { sb.call<void>("WriteNull"); }), errc::guest_fault);
    sb.restore(snap);
    auto call =
        sb.start_call("LoopFor", hl::value_type::uint64, std::vector<hl::argument>{std::uint64_t{2'000'000}});
    int slices = 0;
    while (call.run(1ms) == hl::guest_call::status::sliced) ++slices;
    const auto calls = named("call ");
    ASSERT_EQ(calls.size(), 2u);
    EXPECT_EQ(calls[0].detail, "guest_fault");
    EXPECT_EQ(calls[1].name, "call LoopFor");
    EXPECT_EQ(named("run").size(), static_cast<std::size_t>(slices + 2))
        << "one run per slice, and the faulting call's";
}

TEST_F(Trace, ALimitOnCallsStopsTheRecorderAndMaxEventsBoundsIt) {
    auto sb = make();
    t->start(2);
    for (int i = 0; i < 5; ++i) sb.call<std::int32_t>("AddLocal", i, 1);
    EXPECT_FALSE(t->recording());
    EXPECT_EQ(named("call ").size(), 2u);

    auto small = std::make_shared<hl::trace_recorder>(3);
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), hl::sandbox_config{}.set_trace(small));
    auto sb2 = std::move(u).evolve();
    small->start();
    for (int i = 0; i < 5; ++i) sb2.call<std::int32_t>("AddLocal", i, 1);
    EXPECT_EQ(small->events().size(), 3u);
    EXPECT_EQ(small->dropped(), 1u) << "the first event past the bound stops the recorder";
    EXPECT_FALSE(small->recording());
}

TEST_F(Trace, TheChromeJsonIsValidUtf8WhateverTheNames) {
    auto sb = make();
    t->start();
    EXPECT_EQ(error_of([&] { sb.call<void>(std::string("\xff\xfe\"\\\x01")); }), errc::unknown_function);
    EXPECT_EQ(error_of([&] { sb.call<void>(std::string(255, 'a') + "\xc3\xa9"); }), errc::unknown_function);
    const std::string json = t->chrome_json();
    EXPECT_NE(json.find("call \\ufffd\\ufffd\\\"\\\\\\u0001"), std::string::npos) << json;
    // Every byte is ASCII or part of a well-formed sequence: here, none is above 0x7F at all, as the
    // only non-ASCII bytes were invalid or cut.
    EXPECT_TRUE(std::all_of(json.begin(), json.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }));
}

TEST_F(Trace, TheChromeJsonHasEveryEventAndATrackPerSandbox) {
    auto a = make();
    auto b = make();
    t->start();
    a.call<std::int32_t>("AddLocal", 1, 2);
    b.call<std::int32_t>("AddLocal", 3, 4);
    const std::string json = t->chrome_json();
    EXPECT_EQ(json.rfind("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", 0), 0u) << json;
    const auto count = [&](const std::string& needle) {
        std::size_t n = 0;
        for (auto at = json.find(needle); at != std::string::npos; at = json.find(needle, at + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("\"ph\":\"X\""), t->events().size());
    EXPECT_EQ(count("\"name\":\"call AddLocal\""), 2u);
    EXPECT_EQ(count("\"name\":\"thread_name\""), 2u) << "one track per sandbox";
    EXPECT_NE(json.find("\n]}\n"), std::string::npos);
}

}  // namespace
