// SPDX-License-Identifier: Apache-2.0
// Crash dumps (sandbox_config::core_dump_*): real guests fault or abort, and Debian's gdb reads
// the core files they leave.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core_support.hpp"
#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

namespace fs = std::filesystem;
using hl::errc;
using hl::test::contains;
using hl::test::files_in;
using hl::test::find_gdb;
using hl::test::gdb_backtrace;
using hl::test::temp_dir;

hl::sandbox_config dumping_to(const fs::path& dir) { return hl::sandbox_config{}.set_core_dump_directory(dir); }

/// The failure of calling `function` (void, no arguments) on `sb`.
hl::error failure_of(hl::multi_use_sandbox& sb, const char* function) {
    try {
        sb.call<void>(function);
    } catch (const hl::error& e) {
        return e;
    }
    return hl::error(errc{}, std::string(function) + " returned");
}

TEST(CoreDump, AFaultWritesOneCoreInWhichGdbNamesTheFaultingFunction) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), dumping_to(dir.path())).evolve();
    const hl::error e = failure_of(sb, "FaultInCallee");
    EXPECT_EQ(e.code(), errc::guest_fault) << e.what();
    const auto files = files_in(dir.path());
    ASSERT_EQ(files.size(), 1u) << e.what();
    EXPECT_EQ(files[0].filename().string().rfind("hl-core-" + std::to_string(::getpid()) + "-", 0), 0u);
    EXPECT_EQ(files[0].extension(), ".core");
    EXPECT_TRUE(contains(e.what(), "; core written to " + files[0].string())) << e.what();
    EXPECT_LE(fs::file_size(files[0]), hl::sandbox_config{}.core_dump_max_bytes);

    HL_REQUIRE_GDB(gdb);
    const std::string bt = gdb_backtrace(gdb, hl::test::simpleguest(), files[0]);
    EXPECT_TRUE(contains(bt, "Program terminated with signal SIGSEGV")) << bt;
    EXPECT_TRUE(contains(bt, "#0  ")) << bt;
    EXPECT_TRUE(contains(bt, "write_through")) << bt;
    EXPECT_TRUE(contains(bt, "fault_in_callee")) << bt;
}

TEST(CoreDump, AnAbortWritesACore) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), dumping_to(dir.path())).evolve();
    try {
        sb.call<void>("Abort", 7, std::string("on purpose"));
        FAIL() << "Abort returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::guest_aborted) << e.what();
        EXPECT_TRUE(contains(e.what(), "on purpose; core written to ")) << e.what();
    }
    const auto files = files_in(dir.path());
    ASSERT_EQ(files.size(), 1u);

    HL_REQUIRE_GDB(gdb);
    const std::string bt = gdb_backtrace(gdb, hl::test::simpleguest(), files[0]);
    EXPECT_TRUE(contains(bt, "Program terminated with signal SIGABRT")) << bt;
    EXPECT_TRUE(contains(bt, "hl_abort")) << bt;
}

TEST(CoreDump, AStackOverflowWritesACoreAndKeepsItsCode) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), dumping_to(dir.path())).evolve();
    try {
        sb.call<std::int32_t>("StackOverflow");
        FAIL() << "StackOverflow returned";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::stack_overflow) << e.what();
        EXPECT_TRUE(contains(e.what(), "; core written to ")) << e.what();
    }
    EXPECT_EQ(files_in(dir.path()).size(), 1u);
}

TEST(CoreDump, ASandboxCreatedFromASnapshotDumpsAsItsOriginWasConfigured) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    auto origin = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), dumping_to(dir.path())).evolve();
    auto copy = hl::multi_use_sandbox::from_snapshot(origin.snapshot());
    const hl::error e = failure_of(copy, "WriteNull");
    EXPECT_EQ(e.code(), errc::guest_fault) << e.what();
    EXPECT_TRUE(contains(e.what(), "; core written to ")) << e.what();
    EXPECT_EQ(files_in(dir.path()).size(), 1u);
}

// Each fault costs a call and a restore; once the directory is full, a look at it and no more.
TEST(CoreDump, AGuestThatFaultsTenThousandTimesLeavesAtMostTheMaximumNumberOfCores) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    constexpr std::uint32_t max_files = 4;
    constexpr std::uint64_t max_bytes = 128 * 1024;  // less than the guest's memory: the limit bites
    auto config = dumping_to(dir.path()).set_core_dump_max_files(max_files).set_core_dump_max_bytes(max_bytes);
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config).evolve();
    const auto clean = sb.snapshot();
    const auto start = std::chrono::steady_clock::now();
    int written = 0, refused = 0;
    for (int i = 0; i < 10'000; ++i) {
        const hl::error e = failure_of(sb, "FaultInCallee");
        ASSERT_EQ(e.code(), errc::guest_fault) << e.what();
        written += contains(e.what(), "; core written to ") ? 1 : 0;
        refused += contains(e.what(), "core files already, sandbox_config::core_dump_max_files") ? 1 : 0;
        sb.restore(clean);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("10000 faults with restores: %.2f s (%.0f us each)\n", seconds, seconds * 1e6 / 10'000);
    EXPECT_EQ(written, static_cast<int>(max_files));
    EXPECT_EQ(refused, 10'000 - static_cast<int>(max_files));
    const auto files = files_in(dir.path());
    ASSERT_EQ(files.size(), max_files);
    for (const auto& f : files) {
        EXPECT_EQ(f.extension(), ".core");
        EXPECT_LE(fs::file_size(f), max_bytes) << f;
    }

    // The stack and the faulting code come first, so a cut core still shows where it failed.
    HL_REQUIRE_GDB(gdb);
    const std::string bt = gdb_backtrace(gdb, hl::test::simpleguest(), files[0]);
    EXPECT_TRUE(contains(bt, "write_through")) << bt;
}

TEST(CoreDump, AMissingOrUnusableDirectoryKeepsTheErrorAndSaysWhyNoCoreWasWritten) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    const fs::path missing = dir.path() / "missing";
    const fs::path not_a_directory = dir.path() / "file";
    std::ofstream(not_a_directory) << "x";
    struct case_ {
        fs::path where;
        const char* why;
    };
    std::vector<case_> cases{{missing, "No such file or directory"}, {not_a_directory, "Not a directory"}};
    if (::geteuid() != 0) {  // root writes wherever it likes
        const fs::path read_only = dir.path() / "read-only";
        fs::create_directory(read_only);
        fs::permissions(read_only, fs::perms::owner_read | fs::perms::owner_exec);
        cases.push_back({read_only, "Permission denied"});
    }
    for (const auto& c : cases) {
        auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), dumping_to(c.where)).evolve();
        const hl::error fault = failure_of(sb, "WriteNull");
        EXPECT_EQ(fault.code(), errc::guest_fault) << fault.what();
        EXPECT_TRUE(contains(fault.what(), "; no core written: ")) << fault.what();
        EXPECT_TRUE(contains(fault.what(), c.why)) << fault.what();
        EXPECT_TRUE(sb.poisoned());
    }
    EXPECT_FALSE(fs::exists(missing));
}

TEST(CoreDump, IsOffByDefault) {
    HL_REQUIRE_KVM();
    temp_dir dir;
    const fs::path before = fs::current_path();
    fs::current_path(dir.path());  // where a relative default would write
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    const hl::error e = failure_of(sb, "FaultInCallee");
    fs::current_path(before);
    EXPECT_EQ(e.code(), errc::guest_fault) << e.what();
    EXPECT_FALSE(contains(e.what(), "core")) << e.what();
    EXPECT_TRUE(files_in(dir.path()).empty());
    EXPECT_TRUE(hl::sandbox_config{}.core_dump_directory.empty());
}

TEST(CoreDump, OutOfRangeLimitsAreRejectedNamingTheField) {
    const auto rejected = [](const hl::sandbox_config& config, const char* field) {
        try {
            (void)hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
            ADD_FAILURE() << field << " was accepted";
        } catch (const hl::error& e) {
            EXPECT_EQ(e.code(), errc::invalid_config) << e.what();
            EXPECT_TRUE(contains(e.what(), std::string("sandbox_config::") + field)) << e.what();
        }
    };
    rejected(hl::sandbox_config{}.set_core_dump_max_files(0), "core_dump_max_files");
    rejected(hl::sandbox_config{}.set_core_dump_max_files(65537), "core_dump_max_files");
    rejected(hl::sandbox_config{}.set_core_dump_max_bytes(64 * 1024 - 1), "core_dump_max_bytes");
    rejected(hl::sandbox_config{}.set_core_dump_max_bytes((64ull << 30) + 1), "core_dump_max_bytes");
}

}  // namespace
