// SPDX-License-Identifier: Apache-2.0
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/async_sandbox.hpp"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using hl::errc;

// The file reader keeps every path inside its root, whatever symbolic links the tree holds. Most
// tests call the reader directly, to see its messages (an async call's error code carries none).
class FileReader : public ::testing::Test {
protected:
    void SetUp() override {
        namespace fs = std::filesystem;
        base_ = fs::temp_directory_path() / ("hl-file-reader-" + std::to_string(::getpid()));
        fs::remove_all(base_);
        root_ = base_ / "root";
        fs::create_directories(root_ / "sub");
        fs::create_directories(base_ / "outside");
        std::ofstream(root_ / "data.bin", std::ios::binary) << "inside";
        std::ofstream(root_ / "sub" / "inner.txt", std::ios::binary) << "inner";
        std::ofstream(base_ / "outside" / "secret.txt", std::ios::binary) << "secret";
        fs::create_symlink("sub/inner.txt", root_ / "to_inner");
        fs::create_symlink("../data.bin", root_ / "sub" / "up_to_data");
        fs::create_symlink("sub", root_ / "sub_dir");
        fs::create_symlink(base_ / "outside" / "secret.txt", root_ / "absolute_out");
        fs::create_symlink("../outside/secret.txt", root_ / "relative_out");
        fs::create_symlink("../../outside/secret.txt", root_ / "sub" / "deep_out");
        fs::create_symlink("../outside", root_ / "dir_out");
        fs::create_symlink("/etc/passwd", root_ / "passwd");
        ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0600), 0);
    }
    void TearDown() override { std::filesystem::remove_all(base_); }

    // The file's contents, or the error's message.
    struct outcome {
        bool ok = false;
        std::string text;
    };
    std::vector<outcome> read_all(const std::vector<std::string>& paths) {
        std::vector<outcome> out;
        const auto reader = hl::file_reader_host_function(io.get_executor(), root_);
        hl::test::run_coroutine(io, [&]() -> awaitable<void> {
            for (const auto& path : paths) {
                try {
                    const auto bytes = co_await reader(path);
                    out.push_back({true, std::string(bytes.begin(), bytes.end())});
                } catch (const std::exception& e) {
                    out.push_back({false, e.what()});
                }
            }
        });
        return out;
    }

    static ::testing::AssertionResult refused(const outcome& o, const std::string& says) {
        if (o.ok) return ::testing::AssertionFailure() << "read \"" << o.text << "\"";
        if (o.text.find(says) == std::string::npos) {
            return ::testing::AssertionFailure() << "\"" << o.text << "\" does not say \"" << says << "\"";
        }
        return ::testing::AssertionSuccess();
    }

    asio::io_context io;
    std::filesystem::path base_, root_;
};

TEST_F(FileReader, ReadsFilesAndSymbolicLinksThatStayInsideTheRoot) {
    const auto r = read_all({"data.bin", "sub/inner.txt", "to_inner", "sub/up_to_data", "sub_dir/inner.txt"});
    ASSERT_EQ(r.size(), 5u);
    EXPECT_EQ(r[0].text, "inside");
    EXPECT_EQ(r[1].text, "inner");
    EXPECT_EQ(r[2].text, "inner");
    EXPECT_EQ(r[3].text, "inside");
    EXPECT_EQ(r[4].text, "inner");
    for (const auto& o : r) EXPECT_TRUE(o.ok) << o.text;
}

TEST_F(FileReader, RefusesSymbolicLinksThatLeadOutsideTheRoot) {
    const auto r = read_all({"absolute_out", "relative_out", "sub/deep_out", "dir_out/secret.txt", "passwd"});
    ASSERT_EQ(r.size(), 5u);
    for (const auto& o : r) EXPECT_TRUE(refused(o, "leads outside the root directory"));
}

TEST_F(FileReader, RefusesDotDotAbsolutePathsAndEmptyPaths) {
    const auto r = read_all({"../outside/secret.txt", "sub/../data.bin", (base_ / "outside/secret.txt").string(),
                             "/etc/passwd", ""});
    ASSERT_EQ(r.size(), 5u);
    EXPECT_TRUE(refused(r[0], "must not leave the root directory"));
    EXPECT_TRUE(refused(r[1], "must not leave the root directory"));
    EXPECT_TRUE(refused(r[2], "must be relative"));
    EXPECT_TRUE(refused(r[3], "must be relative"));
    EXPECT_TRUE(refused(r[4], "must be relative"));
}

TEST_F(FileReader, RefusesAFifoADirectoryAndAMissingFileWithoutBlocking) {
    const auto r = read_all({"fifo", "sub", "missing.bin"});
    ASSERT_EQ(r.size(), 3u);
    EXPECT_TRUE(refused(r[0], "not a regular file"));
    EXPECT_TRUE(refused(r[1], "not a regular file"));
    EXPECT_TRUE(refused(r[2], "no such file"));
}

TEST_F(FileReader, AGuestCannotReadThroughALinkThatLeadsOutsideTheRoot) {
    HL_REQUIRE_KVM();
    hl::test::run_coroutine(io, [&]() -> awaitable<void> {
        auto ex = io.get_executor();
        const auto setup = [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostReadFile", ex, hl::file_reader_host_function(ex, root_));
        };
        auto sb = co_await hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, setup);
        auto [ec, bytes] = co_await sb.async_call<std::vector<std::uint8_t>>(
            "ReadHostFile", std::string("absolute_out"), asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::host_function_error) << std::string(bytes.begin(), bytes.end());
        auto inside = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("to_inner"));
        EXPECT_EQ(std::string(inside.begin(), inside.end()), "inner");
    });
}

TEST_F(FileReader, SaysSoRatherThanWalkThePathItselfWhereTheKernelRefusesOpenat2) {
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // In this process openat2 answers ENOSYS, as before Linux 5.6 or under some seccomp filters.
        sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        const sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
        std::string message = "no seccomp";
        const bool filtered = ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
                              ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
        if (filtered) {
            asio::io_context child_io;
            const auto reader = hl::file_reader_host_function(child_io.get_executor(), root_);
            asio::co_spawn(child_io, reader("data.bin"), [&](std::exception_ptr e, std::vector<std::uint8_t> bytes) {
                message = "read " + std::string(bytes.begin(), bytes.end());
                try {
                    if (e) std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    message = x.what();
                }
            });
            child_io.run();
        }
        [[maybe_unused]] const auto written = ::write(out[1], message.data(), message.size());
        ::_exit(0);
    }
    ::close(out[1]);
    std::string message;
    char buffer[512];
    for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;) {
        message.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    if (message == "no seccomp") GTEST_SKIP() << "cannot install a seccomp filter here";
    EXPECT_NE(message.find("needs openat2"), std::string::npos) << message;
}

}  // namespace
