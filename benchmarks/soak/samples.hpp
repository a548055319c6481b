// SPDX-License-Identifier: Apache-2.0
// The soak's resource samples: what the process holds (RSS, file descriptors, threads, KVM VMs),
// whether any of it grows without bound, and an SVG plot of the run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace soak {

struct sample {
    double seconds = 0;
    std::uint64_t tasks = 0;
    std::uint64_t rss_kib = 0;
    std::uint64_t fds = 0;
    std::uint64_t threads = 0;
    std::uint64_t vms = 0;  ///< open KVM VM file descriptors (anon_inode:kvm-vm)
};

/// Reads the process's numbers now (/proc/self/status and /proc/self/fd).
sample take_sample(double seconds, std::uint64_t tasks);

/// One resource's verdict: the largest value of the first and of the last third of the samples
/// after warm-up, and whether the growth between them is within `slack`.
struct growth {
    std::string what;
    std::uint64_t early_max = 0, late_max = 0, slack = 0;
    bool flat() const { return late_max <= early_max + slack; }
};

/// Compares the first and last thirds of `samples` (skipping the first `warmup` fraction of them):
/// RSS may grow by max(4 MiB, 5%), file descriptors by 8, threads by 2, VMs not beyond max_vms.
std::vector<growth> check_growth(const std::vector<sample>& samples, double warmup, std::uint64_t max_vms);

/// Writes the samples as CSV (one line each, with a header).
void write_csv(const std::string& path, const std::vector<sample>& samples);

/// Writes four stacked line plots (RSS, fds, threads, VMs against tasks done) as an SVG.
void write_svg(const std::string& path, const std::vector<sample>& samples, const std::string& title);

}  // namespace soak
