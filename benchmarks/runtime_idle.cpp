// SPDX-License-Identifier: Apache-2.0
// What idle async sandboxes cost the host: threads, memory and file descriptors.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "hl/runtime/runtime.hpp"
#include "runtime_common.hpp"

namespace {

using namespace std::chrono_literals;

// A "Key:   value kB" field of a /proc file, or 0.
double proc_field(const char* file, const std::string& key) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
        if (line.compare(0, key.size() + 1, key + ":") == 0) return std::stod(line.substr(key.size() + 1));
    }
    return 0;
}

double open_fds() {
    std::error_code ec;
    double n = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
    return n;
}

// A few descriptors held back while the sandboxes take all the others, so that /proc can still be
// read afterwards.
class fd_reserve {
public:
    fd_reserve() {
        for (int i = 0; i < 16; ++i) fds_.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    ~fd_reserve() { release(); }
    fd_reserve(const fd_reserve&) = delete;
    fd_reserve& operator=(const fd_reserve&) = delete;
    void release() {
        for (const int fd : fds_) {
            if (fd >= 0) ::close(fd);
        }
        fds_.clear();
    }

private:
    std::vector<int> fds_;
};

struct usage {
    double threads, fds, rss_kib, pss_kib, anon_kib, free_kib, page_tables_kib, sec_page_tables_kib;
    static usage now() {
        return {proc_field("/proc/self/status", "Threads"), open_fds(),
                proc_field("/proc/self/status", "VmRSS"), proc_field("/proc/self/smaps_rollup", "Pss"),
                proc_field("/proc/self/status", "RssAnon"), proc_field("/proc/meminfo", "MemFree"),
                proc_field("/proc/meminfo", "PageTables"), proc_field("/proc/meminfo", "SecPageTables")};
    }
};

// Each sandbox holds a VM fd and a vCPU fd. Past the hard limit only with CAP_SYS_RESOURCE; else
// up to the hard limit. Returns the soft limit now in force.
rlim_t raise_fd_limit(rlim_t wanted) {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
    if (limit.rlim_cur >= wanted) return limit.rlim_cur;
    const rlimit raised{wanted, std::max(limit.rlim_max, wanted)};
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_cur;
}

// One Echo on each sandbox. The kernel then gives every VM a thread of this process
// (kvm-nx-lpage-recovery, Linux >= 6.13), and the pages the call wrote are the sandbox's own.
void call_each(std::vector<hl::async_sandbox>& boxes) {
    std::atomic<std::size_t> calls{0};
    for (const auto& b : boxes) calls += b ? 1 : 0;
    std::promise<void> called;
    if (calls == 0) return;
    for (auto& b : boxes) {
        if (!b) continue;
        b.async_call<std::string>("Echo", std::string("hello\n"), [&](std::error_code, std::string) {
            if (calls.fetch_sub(1) == 1) called.set_value();
        });
    }
    called.get_future().get();
}

// `count` sandboxes created from one snapshot on the default runtime's workers, all idle at once.
// Timed: their creation. Counters: what the process and the machine hold per sandbox. Where the
// machine cannot hold `count`, created says how many it did and the label why the next failed.
// With `then_call`, the same once each has run one call: only for a few, because with thousands of
// VMs in one process every host page fault of a call runs each VM's MMU notifier.
void idle_sandboxes(benchmark::State& state, int count, bool then_call) {
    const auto fd_limit = raise_fd_limit(static_cast<rlim_t>(count) * 4 + 1024);
    auto& rt = hl::runtime::default_runtime();
    std::shared_ptr<const hl::snapshot> snap;
    {
        auto tmpl = hl::bench::make_on(rt.get_executor(0));
        snap = std::get<0>(hl::bench::wait<std::shared_ptr<const hl::snapshot>>(
            [&](auto handler) { tmpl.async_snapshot(std::move(handler)); }));
    }
    for (auto _ : state) {
        const auto before = usage::now();
        fd_reserve reserve;
        std::vector<hl::async_sandbox> boxes(static_cast<std::size_t>(count));
        std::atomic<int> pending{count};
        std::promise<void> all_done;
        std::mutex failure_mutex;
        std::string first_failure;
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < boxes.size(); ++i) {
            hl::async_sandbox::async_create_from(rt.get_executor(), snap, {}, [&, i](std::error_code ec, hl::async_sandbox sb) {
                if (ec) {
                    std::lock_guard lock(failure_mutex);
                    if (first_failure.empty()) first_failure = ec.message() + ": " + sb.last_error();
                } else {
                    boxes[i] = std::move(sb);
                }
                if (pending.fetch_sub(1) == 1) all_done.set_value();
            });
        }
        all_done.get_future().get();
        state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        reserve.release();
        const auto after = usage::now();
        double created = 0;
        for (const auto& b : boxes) created += b ? 1 : 0;
        const double per = std::max(created, 1.0);
        state.counters["created"] = created;
        state.counters["fd_limit"] = static_cast<double>(fd_limit);
        state.counters["workers"] = static_cast<double>(rt.size());
        state.counters["threads"] = after.threads;
        state.counters["threads_before"] = before.threads;
        state.counters["fds_per_sandbox"] = (after.fds - before.fds) / per;
        state.counters["rss_KiB_per_sandbox"] = (after.rss_kib - before.rss_kib) / per;
        state.counters["pss_KiB_per_sandbox"] = (after.pss_kib - before.pss_kib) / per;
        state.counters["anon_KiB_per_sandbox"] = (after.anon_kib - before.anon_kib) / per;
        // Machine-wide, so other processes add noise: what the kernel (KVM) holds besides our pages.
        state.counters["machine_KiB_per_sandbox"] = (before.free_kib - after.free_kib) / per;
        state.counters["page_tables_KiB_per_sandbox"] = (after.page_tables_kib - before.page_tables_kib) / per;
        state.counters["sec_page_tables_KiB_per_sandbox"] =
            (after.sec_page_tables_kib - before.sec_page_tables_kib) / per;
        state.SetItemsProcessed(static_cast<std::int64_t>(created));
        if (!first_failure.empty()) state.SetLabel("stopped at " + std::to_string(int(created)) + ": " + first_failure);
        if (then_call) {
            call_each(boxes);
            const auto called_once = usage::now();
            state.counters["threads_after_a_call"] = called_once.threads;
            state.counters["rss_KiB_per_sandbox_after_a_call"] = (called_once.rss_kib - before.rss_kib) / per;
            state.counters["pss_KiB_per_sandbox_after_a_call"] = (called_once.pss_kib - before.pss_kib) / per;
            state.counters["machine_KiB_per_sandbox_after_a_call"] = (before.free_kib - called_once.free_kib) / per;
        }
        boxes.clear();
        // The sandboxes are destroyed on their workers after the handles go: wait for their fds.
        for (const auto give_up = std::chrono::steady_clock::now() + 120s;
             open_fds() > before.fds + 8 && std::chrono::steady_clock::now() < give_up;) {
            std::this_thread::sleep_for(100ms);
        }
    }
}

const int registered = [] {
    for (int n : {100, 10000}) {
        hl::bench::add_manual("runtime/idle_sandboxes/" + std::to_string(n), idle_sandboxes, n, n <= 100)
            ->Iterations(1)
            ->Repetitions(1);
    }
    return 0;
}();

}  // namespace
