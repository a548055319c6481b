// SPDX-License-Identifier: Apache-2.0
#include "sandbox/core_dump.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>
#include <system_error>

#include "hl/error.hpp"
#include "util/strfmt.hpp"
#include "util/unique_fd.hpp"

namespace hl::detail {
namespace {

constexpr std::uint32_t max_core_files = 65536;
constexpr std::uint64_t min_core_bytes = 64ull << 10, max_core_bytes = 64ull << 30;
constexpr std::string_view core_prefix = "hl-core-", core_suffix = ".core";
constexpr std::string_view program_name = "guest";  // what a Linux guest's argv[0] says too

bool is_core_name(std::string_view name) {
    return name.size() > core_prefix.size() + core_suffix.size() && name.starts_with(core_prefix) &&
           name.ends_with(core_suffix);
}

std::string failed(const std::string& what, int e) {
    return "no core written: " + what + ": " + std::error_code(e, std::system_category()).message();
}

// The core files in the directory `d`, read from its start.
long count_cores(DIR* d) {
    ::rewinddir(d);
    long n = 0;
    errno = 0;
    while (const dirent* entry = ::readdir(d)) n += is_core_name(entry->d_name) ? 1 : 0;
    return errno == 0 ? n : -1;
}

// A name no file in `dir` has yet: hl-core-<pid>-<n>.core, n counting this process's cores. Empty
// with errno set when the directory cannot be asked.
std::string fresh_core_name(int dir) {
    static std::atomic<std::uint64_t> next{0};
    for (;;) {
        std::string name = util::strfmt("hl-core-%d-%llu.core", static_cast<int>(::getpid()),
                                        static_cast<unsigned long long>(next.fetch_add(1)));
        struct stat st {};
        if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? name : std::string();
    }
}

// Fills the open, empty file `fd`: the notes, then as much memory as max_bytes leaves room for.
void write_core(int fd, const core_dump_settings& settings, const core_request& request) {
    std::vector<core_note> notes = thread_notes(request.thread, program_name);
    notes.push_back(auxv_note(request.auxv));
    const std::size_t reserved = max_segments(request.regions.size(), request.wanted.size());
    const std::uint64_t head = core_header_bytes(notes, reserved);
    const std::uint64_t budget = settings.max_bytes > head ? settings.max_bytes - head : 0;
    const auto segments = choose_segments(request.regions, request.wanted, budget, request.memory.pages());
    write_core_file(fd, notes, segments, reserved, request.memory);
}

// Under the directory's lock: checks the count, writes the temporary file and renames it.
std::string dump_locked(DIR* d, const core_dump_settings& settings, const std::function<core_request()>& request) {
    const std::string where = settings.directory.string();
    const int dir = ::dirfd(d);
    const long held = count_cores(d);
    if (held < 0) {
        const int e = errno;
        return failed("cannot read the directory " + where, e);
    }
    if (static_cast<unsigned long>(held) >= settings.max_files) {
        return util::strfmt(
            "no core written: %s holds %ld core files already, sandbox_config::core_dump_max_files "
            "(delete them to get new ones)",
            where.c_str(), held);
    }
    const std::string name = fresh_core_name(dir);
    if (name.empty()) {
        const int e = errno;
        return failed("cannot look into the directory " + where, e);
    }
    const std::string temp = "." + name + ".tmp";
    ::unlinkat(dir, temp.c_str(), 0);  // left by a process that died writing it, if any
    util::unique_fd file(::openat(dir, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!file) {
        const int e = errno;
        return failed("cannot create a file in " + where, e);
    }
    try {
        write_core(file.get(), settings, request());
    } catch (const std::system_error& e) {
        ::unlinkat(dir, temp.c_str(), 0);
        return std::string("no core written: ") + e.what() + " in " + where;
    } catch (...) {
        ::unlinkat(dir, temp.c_str(), 0);
        throw;
    }
    file.reset();
    if (::renameat(dir, temp.c_str(), dir, name.c_str()) != 0) {
        const int e = errno;
        ::unlinkat(dir, temp.c_str(), 0);
        return failed("cannot rename the core file in " + where, e);
    }
    return "core written to " + (settings.directory / name).string();
}

}  // namespace

core_dump_settings core_dump_settings::from(const sandbox_config& config) {
    if (config.core_dump_max_files < 1 || config.core_dump_max_files > max_core_files) {
        throw error(errc::invalid_config,
                    util::strfmt("sandbox_config::core_dump_max_files is %u; it must be between 1 and %u",
                                 config.core_dump_max_files, max_core_files));
    }
    if (config.core_dump_max_bytes < min_core_bytes || config.core_dump_max_bytes > max_core_bytes) {
        throw error(errc::invalid_config,
                    util::strfmt("sandbox_config::core_dump_max_bytes is %llu bytes; it must be between %llu and %llu "
                                 "bytes",
                                 static_cast<unsigned long long>(config.core_dump_max_bytes),
                                 static_cast<unsigned long long>(min_core_bytes),
                                 static_cast<unsigned long long>(max_core_bytes)));
    }
    core_dump_settings s{{}, config.core_dump_max_files, config.core_dump_max_bytes};
    if (config.core_dump_directory.empty()) return s;
    std::error_code e;
    s.directory = std::filesystem::absolute(config.core_dump_directory, e);
    if (e) {
        throw error(errc::invalid_config, util::strfmt("sandbox_config::core_dump_directory '%s' cannot be made "
                                                       "absolute: %s",
                                                       config.core_dump_directory.c_str(), e.message().c_str()));
    }
    return s;
}

std::string dump_core(const core_dump_settings& settings, const std::function<core_request()>& request) noexcept {
    if (settings.directory.empty()) return {};
    try {
        const std::string where = settings.directory.string();
        const std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(where.c_str()), &::closedir);
        if (!d) {
            const int e = errno;  // before the message is built, which may allocate
            return failed("cannot open the directory " + where, e);
        }
        // Held until the directory closes: the count and the new file are one step for every writer.
        while (::flock(::dirfd(d.get()), LOCK_EX) != 0) {
            if (const int e = errno; e != EINTR) return failed("cannot lock the directory " + where, e);
        }
        return dump_locked(d.get(), settings, request);
    } catch (const std::exception& e) {
        try {
            return std::string("no core written: ") + e.what();
        } catch (...) {
            return {};  // out of memory: a message that cannot be built is left out
        }
    } catch (...) {
        return {};
    }
}

}  // namespace hl::detail
