// SPDX-License-Identifier: Apache-2.0
// The soak: a million pool tasks (by default) with a mix of normal calls, host calls, guest faults,
// aborts, kills, deadlines and disconnects (a cancellation at a random moment, as a server's
// client going away), while the process's RSS, open fds, threads and KVM VMs are sampled. Fails if
// any task ends in a way its kind does not allow, or if any resource grows without bound. Not part
// of CI: see benchmarks/README.md.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "hl/runtime/sandbox_pool.hpp"
#include "samples.hpp"

namespace {

using namespace std::chrono_literals;
using hl::errc;

enum class kind { normal, host_call, fault, abort, kill, deadline, disconnect };
constexpr const char* kind_names[] = {"normal", "host_call", "fault", "abort", "kill", "deadline", "disconnect"};

struct options {
    std::uint64_t tasks = 1'000'000;
    std::size_t lanes = 8;
    std::size_t pool_size = 4;
    double sample_every = 2.0;
    std::string out = "soak";
};

class soak_run {
public:
    soak_run(asio::io_context& io, hl::sandbox_pool& pool, const options& o)
        : io_(io), pool_(pool), opt_(o), sampler_(io), start_(std::chrono::steady_clock::now()) {}

    void start() {
        samples_.push_back(soak::take_sample(0, 0));
        for (std::size_t i = 0; i < opt_.lanes; ++i) next();
        sample_later();
    }

    const std::vector<soak::sample>& samples() const { return samples_; }
    std::uint64_t unexpected() const { return unexpected_; }
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

    void report_outcomes() const {
        for (const auto& [key, n] : outcomes_) std::printf("  %-10s %-40s %llu\n", kind_names[static_cast<int>(key.first)], key.second.c_str(), static_cast<unsigned long long>(n));
    }

private:
    // One task in ten is a failure or an interruption of some kind; the rest are calls.
    kind pick() {
        const auto r = random_() % 100;
        if (r < 70) return kind::normal;
        if (r < 80) return kind::host_call;
        if (r < 84) return kind::fault;
        if (r < 88) return kind::abort;
        if (r < 92) return kind::kill;
        if (r < 96) return kind::deadline;
        return kind::disconnect;
    }

    void next() {
        if (started_ == opt_.tasks) return;
        const std::uint64_t n = started_++;
        const kind k = pick();
        auto done = [this, k](std::error_code ec, bool value_ok) { finish(k, ec, value_ok); };
        const auto value = static_cast<std::int64_t>(n);
        switch (k) {
        case kind::normal:
            return pool_.async_call<std::int64_t>("EchoInt64", value, [done, value](std::error_code ec, std::int64_t r) { done(ec, r == value); });
        case kind::host_call:
            return pool_.async_call<std::int32_t>("Add", std::int32_t{20}, std::int32_t{22}, [done](std::error_code ec, std::int32_t r) { done(ec, r == 42); });
        case kind::fault:
            return pool_.async_call<std::int32_t>("ReadNull", [done](std::error_code ec, std::int32_t) { done(ec, true); });
        case kind::abort:
            return pool_.async_call<void>("Abort", std::int32_t{7}, std::string("soak"), [done](std::error_code ec) { done(ec, true); });
        case kind::deadline:
            return pool_.async_call_for<void>(1ms, "Spin", [done](std::error_code ec) { done(ec, true); });
        case kind::kill:
        case kind::disconnect: {
            auto signal = std::make_shared<asio::cancellation_signal>();
            auto timer = std::make_shared<asio::steady_timer>(io_);
            timer->expires_after(std::chrono::microseconds(random_() % (k == kind::kill ? 3000 : 1000)));
            timer->async_wait([signal](std::error_code ec) {
                if (!ec) signal->emit(asio::cancellation_type::terminal);
            });
            auto handler = [done, signal, timer](std::error_code ec, std::uint64_t) {
                timer->cancel();
                done(ec, true);
            };
            if (k == kind::kill) {
                return pool_.async_call<void>("Spin", asio::bind_cancellation_slot(signal->slot(), [handler](std::error_code ec) { handler(ec, 0); }));
            }
            return pool_.async_call<std::uint64_t>("LoopFor", std::uint64_t{20000}, asio::bind_cancellation_slot(signal->slot(), handler));
        }
        }
    }

    // Every kind has the outcomes its contract allows; anything else is a failure of the soak.
    static bool allowed(kind k, std::error_code ec, bool value_ok) {
        const bool aborted = ec == asio::error::operation_aborted;
        switch (k) {
        case kind::normal:
        case kind::host_call: return !ec && value_ok;
        case kind::fault: return ec == errc::guest_fault;
        case kind::abort: return ec == errc::guest_aborted;
        case kind::deadline: return ec == errc::timed_out;
        case kind::kill: return ec == errc::cancelled || aborted;
        case kind::disconnect: return !ec || ec == errc::cancelled || aborted;
        }
        return false;
    }

    void finish(kind k, std::error_code ec, bool value_ok) {
        ++done_;
        ++outcomes_[{k, ec ? ec.message() : (value_ok ? "ok" : "wrong value")}];
        if (!allowed(k, ec, value_ok) && unexpected_++ < 10) {
            std::fprintf(stderr, "soak: unexpected outcome of a %s task: %s\n", kind_names[static_cast<int>(k)],
                         ec ? ec.message().c_str() : "wrong value");
        }
        if (done_ == opt_.tasks) {
            sampler_.cancel();
            samples_.push_back(soak::take_sample(seconds(), done_));
            return;
        }
        next();
    }

    void sample_later() {
        sampler_.expires_after(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(opt_.sample_every)));
        sampler_.async_wait([this](std::error_code ec) {
            if (ec) return;
            samples_.push_back(soak::take_sample(seconds(), done_));
            const auto& s = samples_.back();
            std::printf("%7.1f s %9llu tasks  rss %6llu KiB  fds %3llu  threads %3llu  vms %2llu\n", s.seconds,
                        static_cast<unsigned long long>(s.tasks), static_cast<unsigned long long>(s.rss_kib),
                        static_cast<unsigned long long>(s.fds), static_cast<unsigned long long>(s.threads),
                        static_cast<unsigned long long>(s.vms));
            std::fflush(stdout);
            sample_later();
        });
    }

    asio::io_context& io_;
    hl::sandbox_pool& pool_;
    options opt_;
    asio::steady_timer sampler_;
    std::chrono::steady_clock::time_point start_;
    std::mt19937_64 random_{20261202};
    std::uint64_t started_ = 0, done_ = 0, unexpected_ = 0;
    std::map<std::pair<kind, std::string>, std::uint64_t> outcomes_;
    std::vector<soak::sample> samples_;
};

}  // namespace

int main(int argc, char** argv) {
    options o;
    CLI::App app{"Pool soak: many tasks of every kind, with the process's resources sampled"};
    app.add_option("--tasks", o.tasks, "tasks to run")->capture_default_str();
    app.add_option("--lanes", o.lanes, "tasks in flight at once")->capture_default_str();
    app.add_option("--pool", o.pool_size, "pool size (min = max)")->capture_default_str();
    app.add_option("--sample-every", o.sample_every, "seconds between samples")->capture_default_str();
    app.add_option("--out", o.out, "prefix of the .csv and .svg written")->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    asio::io_context io;
    hl::sandbox_pool pool;
    std::error_code create_error;
    hl::sandbox_pool::async_create(
        io.get_executor(), HL_SIMPLEGUEST, {},
        [](hl::multi_use_sandbox& sb) {
            sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
        },
        {.min_size = o.pool_size, .max_size = o.pool_size, .max_waiters = o.lanes + 1},
        [&](std::error_code ec, hl::sandbox_pool p) {
            create_error = ec;
            pool = std::move(p);
        });
    io.run();
    if (create_error) {
        std::fprintf(stderr, "soak: the pool could not be created: %s\n", create_error.message().c_str());
        return create_error == errc::kvm_unavailable ? 77 : 1;
    }
    io.restart();
    soak_run run(io, pool, o);
    run.start();
    io.run();
    const double seconds = run.seconds();
    pool.close();

    const auto& samples = run.samples();
    const auto verdicts = soak::check_growth(samples, 0.1, o.pool_size + 1);
    soak::write_csv(o.out + ".csv", samples);
    char title[160];
    std::snprintf(title, sizeof title, "soak: %llu pool tasks in %.0f s (%.0f/s), pool of %zu, %zu in flight",
                  static_cast<unsigned long long>(o.tasks), seconds, static_cast<double>(o.tasks) / seconds,
                  o.pool_size, o.lanes);
    soak::write_svg(o.out + ".svg", samples, title);

    std::printf("%s\noutcomes:\n", title);
    run.report_outcomes();
    bool flat = true;
    for (const auto& g : verdicts) {
        std::printf("  %-8s first third max %llu, last third max %llu (slack %llu): %s\n", g.what.c_str(),
                    static_cast<unsigned long long>(g.early_max), static_cast<unsigned long long>(g.late_max),
                    static_cast<unsigned long long>(g.slack), g.flat() ? "flat" : "GROWS");
        flat = flat && g.flat();
    }
    std::printf("wrote %s.csv and %s.svg; unexpected outcomes: %llu\n", o.out.c_str(), o.out.c_str(),
                static_cast<unsigned long long>(run.unexpected()));
    return flat && run.unexpected() == 0 ? 0 : 1;
}
