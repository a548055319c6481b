// SPDX-License-Identifier: Apache-2.0
// Latencies of the async runtime: a short call next to a runaway guest on the same worker (time
// slicing), and a cancellation of a spinning guest until its completion runs.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <functional>
#include <random>

#include "hl/runtime/runtime.hpp"
#include "runtime_common.hpp"

namespace {

using asio::awaitable;
using namespace std::chrono_literals;

using hl::bench::make_on;
using hl::bench::run_on;

const std::string hello = "hello\n";

std::chrono::nanoseconds random_below(std::chrono::nanoseconds bound) {
    static std::mt19937_64 rng(14);
    return std::chrono::nanoseconds(std::uniform_int_distribution<std::int64_t>(0, bound.count() - 1)(rng));
}

// One worker runs Spin on one sandbox; a coroutine of that worker wakes on a timer (a request
// arriving) and calls Echo on another sandbox of the worker. Timed: from the timer's expiry to
// the Echo's completion, so it holds the wait for the runaway guest's slice to end. Reported
// with the slice length (counter slice_us): the p99 should stay within two slices.
void slice_latency(benchmark::State& state) {
    hl::runtime rt({.workers = 1});
    const auto ex = rt.get_executor(0);
    auto runaway = make_on(ex);
    auto sb = make_on(ex);
    run_on(ex, [&]() -> awaitable<void> { co_await sb.async_call<std::string>("Echo", hello); }());  // first-call costs
    std::promise<std::error_code> spin;
    runaway.async_call_for<void>(10s, "Spin", [&](std::error_code ec) { spin.set_value(ec); });  // 10 s: only if stuck
    for (auto _ : state) {
        std::chrono::nanoseconds late{};
        run_on(ex, [&]() -> awaitable<void> {
            // A few slices in, at a random moment of one.
            asio::steady_timer timer(ex, 2 * rt.slice() + random_below(rt.slice()));
            co_await timer.async_wait(asio::use_awaitable);
            benchmark::DoNotOptimize(co_await sb.async_call<std::string>("Echo", hello));
            late = std::chrono::steady_clock::now() - timer.expiry();
        }());
        state.SetIterationTime(std::chrono::duration<double>(late).count());
    }
    runaway.interrupt_handle().kill();
    const auto ec = spin.get_future().get();
    const std::string failure = "runtime/slice_latency: Spin did not end cancelled: " + ec.message();
    hl::bench::latency_outcome(state, ec == hl::errc::cancelled ? "" : failure);
    state.counters["slice_us"] = std::chrono::duration<double, std::micro>(rt.slice()).count();
}

// Spin on a sandbox of worker 0, awaited by a coroutine of an io_context on the benchmark's
// thread; 2 ms in, a cancellation slot is emitted there. Timed: from the emit to the completion
// running in the coroutine (compare with baseline/kvm_kick_latency and guest_calls/
// interrupt_latency); it holds the wake-up of the caller's thread, which sleeps in io.run().
void cancel_latency(benchmark::State& state) {
    hl::runtime rt({.workers = 1});
    auto sb = make_on(rt.get_executor(0));
    const auto [taken] = hl::bench::wait<std::shared_ptr<const hl::snapshot>>(
        [&](auto handler) { sb.async_snapshot(std::move(handler)); });
    const std::shared_ptr<const hl::snapshot> clean = taken;  // lambdas capture a variable, not a binding (clang 14)
    for (auto _ : state) {
        asio::io_context io;
        asio::cancellation_signal signal;
        std::chrono::steady_clock::time_point emitted, completed;
        std::error_code outcome;
        bool done = false;
        asio::co_spawn(io, [&]() -> awaitable<void> {
            auto [ec] = co_await sb.async_call<void>(
                "Spin", asio::bind_cancellation_slot(signal.slot(), asio::experimental::as_tuple(asio::use_awaitable)));
            completed = std::chrono::steady_clock::now();
            outcome = ec;
            done = true;
        }, asio::detached);
        // 2 ms in, and only once the guest runs: on a loaded machine the worker may not have
        // started the call yet, and a cancellation then withdraws it (operation_aborted).
        asio::steady_timer timer(io, 2ms);
        const auto handle = sb.interrupt_handle();
        std::function<void(std::error_code)> emit_when_running = [&](std::error_code) {
            if (!handle.running()) {
                timer.expires_after(100us);
                return timer.async_wait(emit_when_running);
            }
            emitted = std::chrono::steady_clock::now();
            signal.emit(asio::cancellation_type::terminal);
        };
        timer.async_wait(emit_when_running);
        io.run_for(10s);
        if (!done || outcome != hl::errc::cancelled) {
            hl::bench::latency_outcome(state, "runtime/cancel_latency: Spin did not end cancelled: " +
                                                  (done ? outcome.message() : "no completion in 10 s"));
            sb = hl::async_sandbox();  // kills it, and its completion goes to io while io lives
            io.run_for(10s);
            // The loop must end by itself (a break fails Google Benchmark's own check); this
            // sample's time is meaningless, and the counter says so. One iteration per repetition.
            state.SetIterationTime(0);
            continue;
        }
        hl::bench::latency_outcome(state);
        state.SetIterationTime(std::chrono::duration<double>(completed - emitted).count());
        hl::bench::wait<>([&](auto handler) { sb.async_restore(clean, std::move(handler)); });  // it is poisoned
    }
}

// As cancel_latency, with the awaiting coroutine (and the emit) on worker 1 of the runtime and the
// sandbox on worker 0: the arrangement of a server whose connections run on the workers. Worker 1
// spins a while when it runs out of work, so the completion finds it awake; the difference from
// cancel_latency is the caller's wake-up.
void cancel_latency_from_worker(benchmark::State& state) {
    hl::runtime rt({.workers = 2});
    auto sb = make_on(rt.get_executor(0));
    const auto [taken] = hl::bench::wait<std::shared_ptr<const hl::snapshot>>(
        [&](auto handler) { sb.async_snapshot(std::move(handler)); });
    const std::shared_ptr<const hl::snapshot> clean = taken;  // lambdas capture a variable, not a binding (clang 14)
    const auto caller = rt.get_executor(1);
    for (auto _ : state) {
        std::chrono::steady_clock::time_point emitted, completed;
        std::error_code outcome;
        run_on(caller, [&]() -> awaitable<void> {
            asio::cancellation_signal signal;
            const auto handle = sb.interrupt_handle();
            asio::steady_timer timer(caller, 2ms);
            std::function<void(std::error_code)> emit_when_running = [&](std::error_code) {
                if (!handle.running()) {  // as in cancel_latency: a queued call would be withdrawn
                    timer.expires_after(100us);
                    return timer.async_wait(emit_when_running);
                }
                emitted = std::chrono::steady_clock::now();
                signal.emit(asio::cancellation_type::terminal);
            };
            timer.async_wait(emit_when_running);
            auto [ec] = co_await sb.async_call_for<void>(
                10s, "Spin", asio::bind_cancellation_slot(signal.slot(), asio::experimental::as_tuple(asio::use_awaitable)));
            completed = std::chrono::steady_clock::now();
            outcome = ec;
        }());
        hl::bench::latency_outcome(state, outcome == hl::errc::cancelled
                                              ? ""
                                              : "runtime/cancel_latency_from_worker: Spin did not end cancelled: " +
                                                    outcome.message());
        state.SetIterationTime(std::chrono::duration<double>(completed - emitted).count());
        hl::bench::wait<>([&](auto handler) { sb.async_restore(clean, std::move(handler)); });  // it is poisoned
    }
}

const int registered = [] {
    hl::bench::latency(hl::bench::add_manual("runtime/slice_latency", slice_latency));
    hl::bench::latency(hl::bench::add_manual("runtime/cancel_latency", cancel_latency));
    hl::bench::latency(hl::bench::add_manual("runtime/cancel_latency_from_worker", cancel_latency_from_worker));
    return 0;
}();

}  // namespace
