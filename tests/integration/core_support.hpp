// SPDX-License-Identifier: Apache-2.0
// What the crash-dump tests share: a temporary directory, and Debian's gdb reading a core file.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace hl::test {

namespace fs = std::filesystem;

/// A fresh directory under the system's temporary one, removed with everything in it.
class temp_dir {
public:
    temp_dir() {
        std::string name = (fs::temp_directory_path() / "hl-core-test-XXXXXX").string();
        if (::mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = name;
    }
    ~temp_dir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

/// Every entry of `dir`, hidden ones too.
inline std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& entry : fs::directory_iterator(dir)) out.push_back(entry.path());
    return out;
}

/// The gdb on PATH, or empty.
inline std::string find_gdb() {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    for (std::size_t at = 0; at <= dirs.size();) {
        const std::size_t end = std::min(dirs.find(':', at), dirs.size());
        const fs::path candidate = fs::path(dirs.substr(at, end - at)) / "gdb";
        if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
        at = end + 1;
    }
    return {};
}

/// What `gdb -batch -nx -ex bt <guest> <core>` prints, stdout and stderr.
inline std::string gdb_backtrace(const std::string& gdb, const fs::path& guest, const fs::path& core) {
    const std::string command = gdb + " -batch -nx -ex bt '" + guest.string() + "' '" + core.string() + "' 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), &::pclose);
    if (!pipe) return "popen failed";
    std::string out;
    char buffer[4096];
    while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe.get())) out.append(buffer, n);
    return out;
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace hl::test

/// Declares `gdb`, the gdb on PATH, or skips the rest of the test saying it is missing.
#define HL_REQUIRE_GDB(gdb)                         \
    const std::string gdb = ::hl::test::find_gdb(); \
    if (gdb.empty()) GTEST_SKIP() << "needs gdb on PATH to read the core file, skipped (Debian: apt-get install gdb)"
