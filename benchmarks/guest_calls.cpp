// SPDX-License-Identifier: Apache-2.0
#include <thread>

#include "bench_common.hpp"

namespace {

using hl::bench::size_case;

const std::string hello = "hello\n";

void call(benchmark::State& state, size_case s) {
    auto sb = hl::bench::make(s);
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::string>("Echo", hello));
}

// The same call with what issue 21 adds switched on: `what` is "metrics" (an hl::metrics attached),
// "cpu_accounting" (sandbox_config::measure_cpu_time), "cpu_budget" (a budget of 1 s, never hit),
// "trace_off" (a trace recorder attached, not recording) or "trace_on" (recording).
void call_observed(benchmark::State& state, std::string what) {
    auto config = hl::bench::config_for(hl::bench::sizes[0]);
    if (what == "metrics") config.set_metrics(std::make_shared<hl::metrics>());
    if (what == "cpu_accounting") config.set_measure_cpu_time(true);
    if (what == "cpu_budget") config.set_call_limits({.cpu_time = std::chrono::seconds(1)});
    const auto trace = std::make_shared<hl::trace_recorder>(1 << 16);
    if (what.starts_with("trace")) config.set_trace(trace);
    auto sb = hl::uninitialized_sandbox::from_file(HL_SIMPLEGUEST, config).evolve();
    if (what == "trace_on") trace->start();
    for (auto _ : state) {
        benchmark::DoNotOptimize(sb.call<std::string>("Echo", hello));
        if (what == "trace_on" && !trace->recording()) {  // full: 2 events a call; start again
            state.PauseTiming();
            trace->start();
            state.ResumeTiming();
        }
    }
}

// How far past its CPU-time budget a spinning call has run when it ends: the CPU time the sandbox
// accounts to it, less the budget. Reported as the iteration's time.
void cpu_budget_overshoot(benchmark::State& state, std::chrono::milliseconds budget) {
    auto sb = hl::bench::make(hl::bench::sizes[0]);
    const auto snap = sb.snapshot();
    for (auto _ : state) {
        const auto before = sb.usage().cpu_time;
        std::error_code ec;
        sb.restore(snap);
        try {
            sb.call_for<void>(hl::call_limits{.cpu_time = budget}, "Spin");
        } catch (const hl::error& e) {
            ec = e.code();
        }
        const auto over = sb.usage().cpu_time - before - budget;
        state.SetIterationTime(std::max(0.0, std::chrono::duration<double>(over).count()));
        hl::bench::latency_outcome(state, ec == hl::errc::cpu_budget_exceeded
                                              ? ""
                                              : "cpu_budget_overshoot: Spin ended with " + ec.message());
    }
}

// The same call on a Linux program: simpleguest on glibc, c_simpleguest on musl.
void call_linux(benchmark::State& state, const char* guest) {
    auto sb = hl::bench::make(hl::bench::glibc_size, guest);
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::string>("Echo", hello));
}

// A guest function making one clock_gettime system call: a call plus the system call's slow path.
void syscall_call(benchmark::State& state) {
    auto sb = hl::bench::make(hl::bench::glibc_size, HL_LINUXGUEST);
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::int64_t>("ClockGettime"));
}

void call_with_restore(benchmark::State& state, size_case s) {
    auto sb = hl::bench::make(s);
    const auto snap = sb.snapshot();
    for (auto _ : state) {
        benchmark::DoNotOptimize(sb.call<std::string>("Echo", hello));
        sb.restore(snap);
    }
}

void call_with_host_function(benchmark::State& state, size_case s) {
    auto sb = hl::bench::make(s);
    for (auto _ : state) benchmark::DoNotOptimize(sb.call<std::int32_t>("Add", 1, 41));
}

// The first call after the sandbox moves to another thread.
void different_thread(benchmark::State& state) {
    auto sb = hl::bench::make(hl::bench::sizes[0]);
    for (auto _ : state) {
        sb.call<std::string>("Echo", std::string("warmup\n"));
        double elapsed = 0;
        std::thread([&] { elapsed = hl::bench::seconds([&] { sb.call<std::string>("Echo", hello); }); }).join();
        state.SetIterationTime(elapsed);
    }
}

// From interrupt_handle::kill() to the Spin call returning cancelled on its own thread: the same
// arrangement as baseline/kvm_kick_latency. `nothrow`: through the error_code overload of call(),
// which reports the kill without an exception.
void interrupt_latency(benchmark::State& state, bool nothrow) {
    auto sb = hl::bench::make(hl::bench::sizes[0]);
    const auto snap = sb.snapshot();
    const auto handle = sb.interrupt_handle();
    for (auto _ : state) {
        std::chrono::steady_clock::time_point returned;
        std::error_code ec;
        std::thread vcpu([&] {
            if (nothrow) {
                sb.call<void>(ec, "Spin");
            } else {
                try {
                    sb.call<void>("Spin");
                } catch (const hl::error& e) {
                    ec = e.code();
                }
            }
            returned = std::chrono::steady_clock::now();
        });
        while (!handle.running()) std::this_thread::yield();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let it enter the guest
        const auto killed = std::chrono::steady_clock::now();
        handle.kill();
        vcpu.join();
        state.SetIterationTime(std::chrono::duration<double>(returned - killed).count());
        hl::bench::latency_outcome(state, ec == hl::errc::cancelled ? "" : "interrupt_latency: Spin ended with " + ec.message());
        sb.restore(snap);
    }
}

const int registered = [] {
    for (const auto& s : hl::bench::sizes) hl::bench::add(std::string("guest_calls/call/") + s.name, call, s);
    hl::bench::add("guest_calls/call/default_glibc", call_linux, HL_SIMPLEGUEST_GLIBC);
#ifdef HL_C_SIMPLEGUEST_MUSL
    hl::bench::add("guest_calls/call/default_musl", call_linux, HL_C_SIMPLEGUEST_MUSL);
#endif
    hl::bench::add("guest_calls/syscall", syscall_call);
    for (const char* what : {"metrics", "cpu_accounting", "cpu_budget", "trace_off", "trace_on"}) {
        hl::bench::add(std::string("guest_calls/call_with_") + what + "/default", call_observed, std::string(what));
    }
    for (const int ms : {1, 10, 100}) {
        hl::bench::latency(hl::bench::add_manual("guest_calls/cpu_budget_overshoot/" + std::to_string(ms) + "ms",
                                                 cpu_budget_overshoot, std::chrono::milliseconds(ms)),
                           ms == 100 ? 10 : 40);
    }
    for (const auto& s : hl::bench::sizes) {
        hl::bench::add(std::string("guest_calls/call_with_restore/") + s.name, call_with_restore, s);
    }
    for (const auto& s : hl::bench::sizes) {
        hl::bench::add(std::string("guest_calls/call_with_host_function/") + s.name, call_with_host_function, s);
    }
    hl::bench::add_manual("guest_calls/different_thread", different_thread);
    hl::bench::latency(hl::bench::add_manual("guest_calls/interrupt_latency", interrupt_latency, false));
    hl::bench::latency(hl::bench::add_manual("guest_calls/interrupt_latency_nothrow", interrupt_latency, true));
    return 0;
}();

}  // namespace
