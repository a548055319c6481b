// SPDX-License-Identifier: Apache-2.0
// benchmarks/report: runs the suite (or --benchmark_filter=...) with repetitions, keeps the JSON,
// and prints each case's median next to the baseline it should be read against. On a shared,
// virtualized machine only such ratios mean anything.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <regex>
#include <string>
#include <vector>

namespace {

// What each case is a multiple of, and the target where the project set one.
struct baseline_rule {
    std::regex pattern;
    std::string baseline;  // "$size" stands for the same case at the default size
    const char* target;
};

const std::vector<baseline_rule>& rules() {
    static const std::vector<baseline_rule> r = {
        {std::regex("guest_calls/call/default"), "baseline/kvm_exit_roundtrip_cpl3", "<= 1.3"},
        {std::regex("guest_calls/call/default_glibc"), "baseline/kvm_exit_roundtrip_cpl3", "<= 1.1"},
        {std::regex("guest_calls/syscall"), "baseline/kvm_exit_roundtrip_cpl3", "reported"},
        {std::regex("guest_calls/call_with_metrics/default"), "guest_calls/call/default", "<= 1.02"},
        {std::regex("guest_calls/call_with_trace_off/default"), "guest_calls/call/default", "<= 1.01"},
        {std::regex("guest_calls/call_with_(cpu_accounting|cpu_budget|trace_on)/default"), "guest_calls/call/default",
         "reported"},
        {std::regex("guest_calls/cpu_budget_overshoot/.*"), "", "reported"},
        {std::regex("sandboxes/create_initialized/glibc"), "sandboxes/create_initialized/default", "reported"},
        {std::regex("sandboxes/create_from_snapshot/glibc"), "sandboxes/create_from_snapshot/default", "reported"},
        {std::regex("guest_calls/call/default_musl"), "baseline/kvm_exit_roundtrip_cpl3", "<= 1.1"},
        {std::regex("sandboxes/create_initialized/musl"), "sandboxes/create_initialized/c_freestanding", "reported"},
        {std::regex("sandboxes/create_from_snapshot/musl"), "sandboxes/create_from_snapshot/c_freestanding", "reported"},
        {std::regex("guest_calls/call_with_restore/large"), "guest_calls/call_with_restore/default", "<= 1.3"},
        {std::regex("snapshots/restore/large"), "snapshots/restore/default", "<= 1.3"},
        {std::regex("sandboxes/create_initialized/default"), "baseline/kvm_create_vm_vcpu", "<= 2"},
        {std::regex("guest_calls/interrupt_latency"), "baseline/kvm_kick_latency", "<= 1.2"},
        {std::regex("guest_calls/interrupt_latency_nothrow"), "baseline/kvm_kick_latency", "<= 1.2"},
        {std::regex("runtime/cancel_latency"), "baseline/kvm_kick_latency", "<= 1.2"},
        {std::regex("runtime/cancel_latency_from_worker"), "baseline/kvm_kick_latency", "<= 1.2"},
        {std::regex("runtime/async_call_inline"), "guest_calls/call/default", "<= 1.05"},
        {std::regex("runtime/async_call"), "guest_calls/call/default", "<= 1.3"},
        {std::regex("runtime/async_call_from_worker"), "guest_calls/call/default", "<= 1.3"},
        {std::regex("runtime/calls_beside_a_runaway/share:25"), "runtime/calls_beside_a_runaway/share:100", "reported"},
        {std::regex("scripts/call/(js|lua)"), "guest_calls/call/default_glibc", "reported"},
        {std::regex("scripts/call_with_restore/(js|lua)"), "scripts/call/$1", "reported"},
        {std::regex("scripts/restore/(js|lua)"), "snapshots/restore/default", "reported"},
        {std::regex("scripts/first_call_from_snapshot/(js|lua)"), "scripts/call_with_restore/$1", "reported"},
        {std::regex("(.*)/(small|medium|large)"), "$1/default", nullptr},
        {std::regex("sandboxes/.*"), "baseline/kvm_create_vm_vcpu", nullptr},
        {std::regex("(guest_calls|sample_workloads)/.*"), "baseline/kvm_exit_roundtrip_cpl3", nullptr},
        {std::regex("shared_memory/copy_(to|from)_slice/64MB"), "baseline/memcpy_64MB", nullptr},
    };
    return r;
}

class ratio_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const auto& run : runs) {
            if (run.aggregate_name == "median" || (run.run_type == Run::RT_Iteration && run.repetitions <= 1)) {
                medians_[run.run_name.function_name] = run.GetAdjustedRealTime() * to_ns(run.time_unit);
            }
        }
    }

    void Finalize() override {
        ConsoleReporter::Finalize();
        std::printf("\n%-72s %14s  %-38s %8s  %s\n", "case", "median", "baseline", "ratio", "target");
        for (const auto& [name, ns] : medians_) {
            std::string baseline;
            const char* target = nullptr;
            for (const auto& rule : rules()) {
                std::smatch m;
                if (std::regex_match(name, m, rule.pattern)) {
                    baseline = m.format(rule.baseline);
                    target = rule.target;
                    break;
                }
            }
            const auto found = medians_.find(baseline);
            if (baseline == name || found == medians_.end()) {
                std::printf("%-72s %14s\n", name.c_str(), human(ns).c_str());
            } else {
                std::printf("%-72s %14s  %-38s %8.2f  %s\n", name.c_str(), human(ns).c_str(), baseline.c_str(),
                            ns / found->second, target ? target : "");
            }
        }
    }

private:
    static double to_ns(benchmark::TimeUnit unit) {
        switch (unit) {
        case benchmark::kNanosecond: return 1;
        case benchmark::kMicrosecond: return 1e3;
        case benchmark::kMillisecond: return 1e6;
        case benchmark::kSecond: return 1e9;
        }
        return 1;
    }
    static std::string human(double ns) {
        char text[32];
        if (ns >= 1e6) std::snprintf(text, sizeof text, "%.2f ms", ns / 1e6);
        else if (ns >= 1e3) std::snprintf(text, sizeof text, "%.1f us", ns / 1e3);
        else std::snprintf(text, sizeof text, "%.0f ns", ns);
        return text;
    }

    std::map<std::string, double> medians_;
};

bool has_flag(int argc, char** argv, const char* prefix) {
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], prefix, std::strlen(prefix)) == 0) return true;
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<char*> args(argv, argv + argc);
    static char repetitions[] = "--benchmark_repetitions=5";
    static char aggregates[] = "--benchmark_report_aggregates_only=true";
    static char interleave[] = "--benchmark_enable_random_interleaving=true";
    static char out[] = "--benchmark_out=benchmark-report.json";
    static char out_format[] = "--benchmark_out_format=json";
    if (!has_flag(argc, argv, "--benchmark_repetitions")) args.push_back(repetitions);
    if (!has_flag(argc, argv, "--benchmark_report_aggregates_only")) args.push_back(aggregates);
    if (!has_flag(argc, argv, "--benchmark_enable_random_interleaving")) args.push_back(interleave);
    if (!has_flag(argc, argv, "--benchmark_out=")) args.push_back(out);
    if (!has_flag(argc, argv, "--benchmark_out_format")) args.push_back(out_format);
    int count = static_cast<int>(args.size());
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
    ratio_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    return 0;
}
