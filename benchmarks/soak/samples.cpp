// SPDX-License-Identifier: Apache-2.0
#include "samples.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string_view>

namespace soak {
namespace {

std::uint64_t status_field(const std::string& status, std::string_view name) {
    const auto at = status.find(name);
    if (at == std::string::npos) return 0;
    return std::strtoull(status.c_str() + at + name.size(), nullptr, 10);
}

}  // namespace

sample take_sample(double seconds, std::uint64_t tasks) {
    sample s{seconds, tasks};
    std::ifstream in("/proc/self/status");
    std::stringstream text;
    text << in.rdbuf();
    const std::string status = text.str();
    s.rss_kib = status_field(status, "VmRSS:");
    s.threads = status_field(status, "Threads:");
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        ++s.fds;
        std::array<char, 64> target{};
        const ssize_t n = ::readlink(entry.path().c_str(), target.data(), target.size() - 1);
        if (n > 0 && std::string_view(target.data(), static_cast<std::size_t>(n)) == "anon_inode:kvm-vm") ++s.vms;
    }
    return s;
}

std::vector<growth> check_growth(const std::vector<sample>& samples, double warmup, std::uint64_t max_vms) {
    const std::size_t skip = static_cast<std::size_t>(static_cast<double>(samples.size()) * warmup);
    const std::size_t n = samples.size() > skip ? samples.size() - skip : 0;
    const std::size_t third = std::max<std::size_t>(n / 3, 1);
    auto max_of = [&](std::size_t from, std::size_t to, std::uint64_t sample::*field) {
        std::uint64_t m = 0;
        for (std::size_t i = from; i < to && i < samples.size(); ++i) m = std::max(m, samples[i].*field);
        return m;
    };
    std::vector<growth> out;
    auto add = [&](const char* what, std::uint64_t sample::*field, std::function<std::uint64_t(std::uint64_t)> slack) {
        growth g{what, max_of(skip, skip + third, field), max_of(samples.size() - third, samples.size(), field)};
        g.slack = slack(g.early_max);
        out.push_back(g);
    };
    add("rss_kib", &sample::rss_kib, [](std::uint64_t early) { return std::max<std::uint64_t>(4 << 10, early / 20); });
    add("fds", &sample::fds, [](std::uint64_t) { return 8; });
    add("threads", &sample::threads, [](std::uint64_t) { return 2; });
    add("vms", &sample::vms, [max_vms](std::uint64_t early) { return max_vms > early ? max_vms - early : 0; });
    return out;
}

void write_csv(const std::string& path, const std::vector<sample>& samples) {
    std::ofstream out(path);
    out << "seconds,tasks,rss_kib,fds,threads,vms\n";
    for (const auto& s : samples) {
        out << s.seconds << ',' << s.tasks << ',' << s.rss_kib << ',' << s.fds << ',' << s.threads << ',' << s.vms << '\n';
    }
}

void write_svg(const std::string& path, const std::vector<sample>& samples, const std::string& title) {
    constexpr double width = 720, panel = 150, left = 70, right = 20, top = 40, gap = 30;
    struct series {
        const char* label;
        std::function<double(const sample&)> value;
    };
    const std::array<series, 4> plots{{
        {"RSS (MiB)", [](const sample& s) { return static_cast<double>(s.rss_kib) / 1024.0; }},
        {"open fds", [](const sample& s) { return static_cast<double>(s.fds); }},
        {"threads", [](const sample& s) { return static_cast<double>(s.threads); }},
        {"KVM VMs", [](const sample& s) { return static_cast<double>(s.vms); }},
    }};
    const double height = top + plots.size() * (panel + gap) + 20;
    const double max_tasks = samples.empty() ? 1.0 : std::max(1.0, static_cast<double>(samples.back().tasks));
    std::ofstream out(path);
    out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
        << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << title << "</text>\n";
    for (std::size_t p = 0; p < plots.size(); ++p) {
        const double y0 = top + p * (panel + gap);
        double hi = 0;
        for (const auto& s : samples) hi = std::max(hi, plots[p].value(s));
        hi = hi <= 0 ? 1 : hi * 1.1;
        const double plot_w = width - left - right;
        out << "<rect x=\"" << left << "\" y=\"" << y0 << "\" width=\"" << plot_w << "\" height=\"" << panel
            << "\" fill=\"none\" stroke=\"#888\"/>\n"
            << "<text x=\"5\" y=\"" << y0 + 12 << "\">" << plots[p].label << "</text>\n"
            << "<text x=\"5\" y=\"" << y0 + 28 << "\">max " << hi / 1.1 << "</text>\n"
            << "<text x=\"" << left - 5 << "\" y=\"" << y0 + panel << "\" text-anchor=\"end\">0</text>\n"
            << "<polyline fill=\"none\" stroke=\"#c03\" stroke-width=\"1.5\" points=\"";
        for (const auto& s : samples) {
            const double x = left + plot_w * static_cast<double>(s.tasks) / max_tasks;
            const double y = y0 + panel - panel * plots[p].value(s) / hi;
            out << x << ',' << y << ' ';
        }
        out << "\"/>\n";
    }
    out << "<text x=\"" << width - right << "\" y=\"" << height - 5 << "\" text-anchor=\"end\">tasks done (0 .. "
        << static_cast<std::uint64_t>(max_tasks) << ")</text>\n</svg>\n";
}

}  // namespace soak
