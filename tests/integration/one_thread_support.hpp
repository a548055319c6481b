// SPDX-License-Identifier: Apache-2.0
// For tests of calls with slices and deadlines on one thread, dedicated to calls or not: sandboxes
// on a chosen interrupt signal, and runs and calls whose end is checked against their time.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace hl::test::one_thread {

using hl::errc;
using hl::value_type;
using status = hl::guest_call::status;
using clock_type = std::chrono::steady_clock;
using hl::test::error_of;

inline hl::multi_use_sandbox make(int signal_offset = 0) {
    hl::sandbox_config config;
    config.interrupt_signal_offset = signal_offset;
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

// Undoes the test thread's dedication whatever way the test ends.
struct dedication {
    explicit dedication(bool on) { hl::guest_call::dedicate_this_thread(on); }
    ~dedication() { hl::guest_call::dedicate_this_thread(false); }
};


// Runs a fresh Spin in slices of `slice` `runs` times, each of which must end as sliced and no
// earlier than its slice; then kills it and restores. False once a run ended otherwise.
using snapshot_ptr = std::shared_ptr<const hl::snapshot>;

inline bool spin_in_slices(hl::multi_use_sandbox& sb, const snapshot_ptr& snap, std::chrono::nanoseconds slice, int runs) {
    auto spin = sb.start_call("Spin", value_type::void_type, std::vector<hl::argument>{});
    bool ok = true;
    for (int i = 0; i < runs && ok; ++i) {
        const auto before = clock_type::now();
        const errc e = error_of([&] { ok = spin.run(slice) == status::sliced; });
        EXPECT_EQ(e, errc{}) << "run " << i;
        ok = ok && e == errc{};
        EXPECT_GE(clock_type::now() - before, slice) << "a slice ended before its time";
    }
    if (ok) {
        sb.interrupt_handle().kill();
        EXPECT_EQ(error_of([&] { spin.run(slice); }), errc::cancelled);
    }
    sb.restore(snap);
    return ok;
}


inline void expect_times_out_no_earlier(hl::multi_use_sandbox& sb, std::chrono::nanoseconds timeout) {
    const auto before = clock_type::now();
    EXPECT_EQ(error_of([&] { sb.call_for<void>(timeout, "Spin"); }), errc::timed_out) << timeout.count() << " ns";
    EXPECT_GE(clock_type::now() - before, timeout) << "a deadline passed before its time";
}

// A short call with a deadline: it returns its result, or (on a slow machine) times out no earlier
// than its deadline.
inline void short_call(hl::multi_use_sandbox& sb, const snapshot_ptr& snap, std::chrono::nanoseconds timeout, std::int32_t a) {
    const auto before = clock_type::now();
    std::int32_t sum = 0;
    const errc e = error_of([&] { sum = sb.call_for<std::int32_t>(timeout, "AddLocal", a, 1); });
    if (e == errc{}) {
        EXPECT_EQ(sum, a + 1);
        return;
    }
    EXPECT_EQ(e, errc::timed_out);
    EXPECT_GE(clock_type::now() - before, timeout) << "a deadline passed before its time";
    sb.restore(snap);
}


}  // namespace hl::test::one_thread
