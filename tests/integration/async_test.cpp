// SPDX-License-Identifier: Apache-2.0
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>
#include <type_traits>

#include "async_support.hpp"
#include "guest_paths.hpp"
#include "hl/runtime/async_host_function.hpp"
#include "hl/runtime/async_sandbox.hpp"
#include "hl/runtime/runtime.hpp"

namespace {

// A handle is the sandbox: a copy would outlive what it was given for.
static_assert(!std::is_copy_constructible_v<hl::async_sandbox>);
static_assert(!std::is_copy_assignable_v<hl::async_sandbox>);
static_assert(std::is_nothrow_move_constructible_v<hl::async_sandbox>);
static_assert(std::is_nothrow_move_assignable_v<hl::async_sandbox>);

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using hl::errc;
using hl::test::error_of;

class Async : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }

    awaitable<hl::async_sandbox> make() {
        co_return co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                           [](hl::uninitialized_sandbox& u) {
                                                               u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
                                                           });
    }

    // Runs `body` as a coroutine on io and fails the test if it throws.
    template <class F>
    void run(F body) {
        hl::test::run_coroutine(io, std::move(body));
    }

    // Waits, a millisecond at a time, until `done()`; gives up after `limit` (the caller checks).
    template <class F>
    awaitable<void> until(F done, std::chrono::milliseconds limit = 10s) {
        for (auto waited = 0ms; !done() && waited < limit; waited += 1ms) {
            asio::steady_timer t(io, 1ms);
            co_await t.async_wait(use_awaitable);
        }
    }

    asio::io_context io;
};

TEST_F(Async, CallsWithTheDefaultTokenInACoroutine) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        std::string r = co_await sb.async_call<std::string>("Echo", std::string("hi"));
        EXPECT_EQ(r, "hi");
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", 40, 2, use_awaitable), 42);
    });
}

TEST_F(Async, ReportsErrorsThroughAsTuple) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        auto [ec, r] = co_await sb.async_call<std::int32_t>("NoSuchFunction", asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::unknown_function);
        EXPECT_EQ(r, 0);
        EXPECT_NE(sb.last_error().find("NoSuchFunction"), std::string::npos) << sb.last_error();
        auto [ec2, r2] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 2, asio::experimental::as_tuple(use_awaitable));
        EXPECT_FALSE(ec2);
        EXPECT_EQ(r2, 3);
    });
}

TEST_F(Async, ThrowsErrorsIntoTheCoroutineWithUseAwaitable) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        try {
            co_await sb.async_call<void>("ReturnGuestError", 7, std::string("nope"));
            ADD_FAILURE() << "no exception";
        } catch (const std::system_error& e) {
            EXPECT_EQ(e.code(), errc::guest_error);
        }
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("AddLocal", 2, 2), 4);
    });
}

TEST_F(Async, CompletesPlainCallbacksOnTheirExecutorNotTheVcpuThread) {
    std::optional<hl::async_sandbox> sb;
    hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {}, {},
                                    [&](std::error_code ec, hl::async_sandbox s) {
                                        ASSERT_FALSE(ec);
                                        sb.emplace(std::move(s));
                                    });
    io.run();
    ASSERT_TRUE(sb && *sb);
    io.restart();
    const auto io_thread = std::this_thread::get_id();
    std::vector<std::int32_t> order;
    for (int i = 0; i < 100; ++i) {
        sb->async_call<std::int32_t>("IncrementCounter", [&](std::error_code ec, std::int32_t v) {
            EXPECT_FALSE(ec);
            EXPECT_EQ(std::this_thread::get_id(), io_thread);
            order.push_back(v);
        });
    }
    io.run();  // returns only when all 100 completions ran: the work is tracked
    ASSERT_EQ(order.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i + 1) << "calls queued to one sandbox run in order";
}

TEST_F(Async, WorksWithUseFuture) {
    auto work = asio::make_work_guard(io);
    std::thread loop([&] { io.run(); });
    auto sb = hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {}, {}, asio::use_future).get();
    EXPECT_EQ(sb.async_call<std::string>("Echo", std::string("future"), asio::use_future).get(), "future");
    auto snap = sb.async_snapshot(asio::use_future).get();
    EXPECT_EQ(sb.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 1);
    sb.async_restore(snap, asio::use_future).get();
    EXPECT_EQ(sb.async_call<std::int32_t>("IncrementCounter", asio::use_future).get(), 1);
    work.reset();
    loop.join();
}

TEST_F(Async, RunsAThousandConcurrentCoroutinesOverEightSandboxes) {
    std::vector<hl::async_sandbox> boxes;
    run([&]() -> awaitable<void> {
        for (int i = 0; i < 8; ++i) boxes.push_back(co_await make());
    });
    io.restart();
    std::atomic<int> checked{0};
    for (int i = 0; i < 1000; ++i) {
        asio::co_spawn(io, [&, i]() -> awaitable<void> {
            auto& sb = boxes[static_cast<std::size_t>(i) % boxes.size()];
            const std::string text = "request " + std::to_string(i);
            EXPECT_EQ(co_await sb.async_call<std::string>("Echo", text), text);
            EXPECT_EQ(co_await sb.async_call<std::int32_t>("Add", i, 1), i + 1);
            ++checked;
        }, asio::detached);
    }
    io.run();
    EXPECT_EQ(checked.load(), 1000);
}

TEST_F(Async, CancelsSpinWhenATimerWinsTheRace) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        auto snap = co_await sb.async_snapshot();
        asio::steady_timer timer(io, 30ms);
        auto winner = co_await (sb.async_call<void>("Spin", asio::experimental::as_tuple(use_awaitable)) ||
                                timer.async_wait(use_awaitable));
        EXPECT_EQ(winner.index(), 1u) << "the timer finished first";
        // The call was interrupted and the sandbox poisoned: a restore brings it back.
        auto [ec, v] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 1, asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::poisoned);
        co_await sb.async_restore(snap);
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("AddLocal", 1, 1), 2);
    });
}

TEST_F(Async, ACancelledRunningCallCompletesWithCancelled) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        asio::cancellation_signal signal;
        asio::steady_timer timer(io, 20ms);
        timer.async_wait([&](std::error_code) { signal.emit(asio::cancellation_type::terminal); });
        auto [ec] = co_await sb.async_call<void>(
            "Spin", asio::bind_cancellation_slot(signal.slot(), asio::experimental::as_tuple(use_awaitable)));
        EXPECT_EQ(ec, errc::cancelled);
    });
}

TEST_F(Async, ACallCancelledBeforeItStartsNeverRuns) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        asio::cancellation_signal signal;
        std::error_code second;
        bool second_done = false;
        // The first call keeps the vCPU busy; the second waits in the queue and is cancelled there.
        auto first = sb.async_call<std::uint64_t>("LoopFor", std::uint64_t{3'000'000}, asio::use_future);
        sb.async_call<std::int32_t>("IncrementCounter",
                                    asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec, std::int32_t) {
                                        second = ec;
                                        second_done = true;
                                    }));
        signal.emit(asio::cancellation_type::terminal);
        EXPECT_EQ(co_await sb.async_call<std::int32_t>("IncrementCounter"), 1) << "the cancelled call did not run";
        EXPECT_TRUE(second_done);
        EXPECT_EQ(second, asio::error::operation_aborted);
        EXPECT_EQ(first.get(), 3'000'000u);
    });
}

TEST_F(Async, AsyncHostFunctionsAwaitATimerAndReadAFileWithoutBlockingTheLoop) {
    const auto dir = std::filesystem::temp_directory_path() / ("hl-async-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "data.bin", std::ios::binary) << "file contents via io_uring";
    run([&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto sb = co_await hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
            hl::register_async_host_function(u, "HostReadFile", ex, hl::file_reader_host_function(ex, dir));
        });
        // While the guest waits 50 ms on the host's timer, the event loop keeps serving this timer.
        bool loop_was_free = false;
        asio::steady_timer probe(io, 10ms);
        probe.async_wait([&](std::error_code) { loop_was_free = true; });
        EXPECT_EQ(co_await sb.async_call<std::uint32_t>("SleepOnHost", 50u), 50u);
        EXPECT_TRUE(loop_was_free);

        const auto bytes = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("data.bin"));
        EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "file contents via io_uring");

        auto [ec, none] = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("../etc/passwd"),
                                                                            asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::host_function_error) << "paths may not leave the root";
        auto [ec2, none2] = co_await sb.async_call<std::vector<std::uint8_t>>("ReadHostFile", std::string("missing.bin"),
                                                                              asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec2, errc::host_function_error);
    });
    std::filesystem::remove_all(dir);
}

TEST_F(Async, CancellingACallReachesTheCoroutineHostFunctionItWaitsOn) {
    run([&]() -> awaitable<void> {
        auto ex = io.get_executor();
        auto sb = co_await hl::async_sandbox::async_create(ex, hl::test::simpleguest(), {}, [&](hl::uninitialized_sandbox& u) {
            hl::register_async_host_function(u, "HostSleep", ex, hl::timer_host_function(ex));
        });
        const auto start = std::chrono::steady_clock::now();
        asio::steady_timer timer(io, 30ms);
        auto winner = co_await (sb.async_call<std::uint32_t>("SleepOnHost", 60'000u, asio::experimental::as_tuple(use_awaitable)) ||
                                timer.async_wait(use_awaitable));
        EXPECT_EQ(winner.index(), 1u);
        // The guest waited on a 60 s timer; the cancellation ended that wait, not the timer.
        EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
        auto [ec, v] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 1, asio::experimental::as_tuple(use_awaitable));
        EXPECT_EQ(ec, errc::poisoned);
    });
}

TEST_F(Async, ExceptionsThrownInsideCoroutinesReachTheirCompletion) {
    bool caught = false;
    asio::co_spawn(io, [&]() -> awaitable<void> {
        auto sb = co_await make();
        co_await sb.async_call<void>("WriteNull");  // throws std::system_error(guest_fault)
    }, [&](std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            caught = x.code() == errc::guest_fault;
        }
    });
    io.run();
    EXPECT_TRUE(caught);
}

TEST_F(Async, ShutdownWithCallsInFlightCompletesThemAll) {
    int aborted = 0, cancelled = 0, other = 0;
    {
        std::optional<hl::async_sandbox> sb;
        run([&]() -> awaitable<void> { sb.emplace(co_await make()); });
        io.restart();
        sb->async_call<void>("Spin", [&](std::error_code ec) { (ec == errc::cancelled ? cancelled : other)++; });
        for (int i = 0; i < 5; ++i) {
            sb->async_call<std::int32_t>("AddLocal", 1, 1, [&](std::error_code ec, std::int32_t) {
                (ec == asio::error::operation_aborted ? aborted : other)++;
            });
        }
        while (!sb->interrupt_handle().running()) std::this_thread::sleep_for(1ms);
        sb.reset();  // kills Spin, aborts the queue, joins the vCPU thread
    }
    io.run();
    EXPECT_EQ(cancelled, 1);
    EXPECT_EQ(aborted, 5);
    EXPECT_EQ(other, 0);
}

TEST_F(Async, CreationFailuresArriveAsErrors) {
    std::error_code error;
    bool empty = false;
    hl::async_sandbox::async_create(io.get_executor(), "/nonexistent.elf", {}, {},
                                    [&](std::error_code ec, hl::async_sandbox sb) {
                                        error = ec;
                                        empty = !sb;
                                    });
    io.run();
    EXPECT_EQ(error, errc::invalid_guest);
    EXPECT_TRUE(empty);
}

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

TEST_F(Async, AMovedFromHandleFailsEveryOperationWithUsageError) {
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        auto clean = co_await sb.async_snapshot();
        auto moved = std::move(sb);
        EXPECT_FALSE(sb);
        EXPECT_TRUE(moved);
        auto [e1, r1] = co_await sb.async_call<std::int32_t>("AddLocal", 1, 2, as_tuple(use_awaitable));
        EXPECT_EQ(e1, errc::usage_error);
        EXPECT_EQ(r1, 0);
        auto [e2, snap] = co_await sb.async_snapshot(as_tuple(use_awaitable));
        EXPECT_EQ(e2, errc::usage_error);
        EXPECT_FALSE(snap);
        auto [e3] = co_await sb.async_restore(clean, as_tuple(use_awaitable));
        EXPECT_EQ(e3, errc::usage_error);
        EXPECT_EQ(error_of([&] { (void)sb.interrupt_handle(); }), errc::usage_error);
        EXPECT_EQ(sb.last_error(), "");
        // A plain callback completes, posted, on the executor the moved-from handle kept.
        std::optional<std::error_code> posted;
        sb.async_call<std::int32_t>("AddLocal", 1, 2, [&](std::error_code ec, std::int32_t) { posted = ec; });
        EXPECT_FALSE(posted) << "never completed inline";
        co_await until([&] { return posted.has_value(); });
        EXPECT_EQ(posted, errc::usage_error);
        EXPECT_EQ(co_await moved.async_call<std::int32_t>("AddLocal", 1, 2), 3) << "the sandbox went with the move";
    });
}

TEST_F(Async, ADefaultConstructedHandleFailsEveryOperationWithUsageError) {
    hl::async_sandbox sb;
    EXPECT_FALSE(sb);
    EXPECT_FALSE(sb.get_executor());
    EXPECT_EQ(sb.last_error(), "");
    EXPECT_EQ(error_of([&] { (void)sb.interrupt_handle(); }), errc::usage_error);
    // Neither the handle nor the callback has an executor to complete on: the initiation throws.
    EXPECT_EQ(error_of([&] { sb.async_call<void>("Spin", [](std::error_code) { ADD_FAILURE() << "completed"; }); }),
              errc::usage_error);
    run([&]() -> awaitable<void> {
        auto [ec] = co_await sb.async_call<void>("Spin", as_tuple(use_awaitable));  // the coroutine's executor
        EXPECT_EQ(ec, errc::usage_error);
        auto [ec2, snap] = co_await sb.async_snapshot(as_tuple(use_awaitable));
        EXPECT_EQ(ec2, errc::usage_error);
    });
}

TEST_F(Async, DroppingTheLastHandleInsideItsOwnHostFunctionLetsTheCallFinishFirst) {
    std::optional<hl::async_sandbox> sb;
    run([&]() -> awaitable<void> {
        sb.emplace(co_await hl::async_sandbox::async_create(io.get_executor(), hl::test::simpleguest(), {},
                                                            [&](hl::uninitialized_sandbox& u) {
                                                                u.register_host_function("HostAdd", [&](std::int32_t a, std::int32_t b) {
                                                                    sb.reset();  // on the vCPU thread, mid-call
                                                                    return a + b;
                                                                });
                                                            }));
    });
    io.restart();
    // A callback, so that the initiation holds no reference: the host function drops the last one.
    std::optional<std::error_code> outcome;
    std::int32_t result = 0;
    sb->async_call<std::int32_t>("Add", 1, 2, [&](std::error_code ec, std::int32_t r) {
        outcome = ec;
        result = r;
    });
    io.run();  // returns once the completion ran
    ASSERT_TRUE(outcome);
    EXPECT_FALSE(sb);
    // The destruction waited for the host function to return, then killed the call (or found it over).
    EXPECT_TRUE(*outcome == errc::cancelled || (!*outcome && result == 3)) << outcome->message();
}

TEST(Runtime, WorkersAreNamedExecutorsAndRefuseAnIndexOutOfRange) {
    hl::runtime rt({.workers = 2});
    EXPECT_EQ(rt.size(), 2u);
    EXPECT_EQ(error_of([&] { (void)rt.get_executor(2); }), errc::usage_error);
    EXPECT_FALSE(rt.running_in_this_thread());
    // A worker's executor runs handlers on that worker's thread, which knows it is one.
    std::promise<bool> on_worker;
    asio::post(rt.get_executor(1), [&] { on_worker.set_value(rt.running_in_this_thread()); });
    EXPECT_TRUE(on_worker.get_future().get());
}

TEST_F(Async, ACancellationAtAnyMomentOfACallEndsIt) {
    hl::test::watchdog dog(20s);
    run([&]() -> awaitable<void> {
        auto sb = co_await make();
        dog.watch(sb.interrupt_handle());
        auto clean = co_await sb.async_snapshot();
        std::mt19937 rng(7);
        for (int round = 0; round < 50 && !dog.fired(); ++round) {
            asio::cancellation_signal signal;
            std::optional<std::error_code> outcome;
            sb.async_call<void>("Spin", asio::bind_cancellation_slot(signal.slot(), [&](std::error_code ec) { outcome = ec; }));
            // From still queued, through taken by the vCPU thread but not yet in the guest, to in it.
            const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 300)(rng));
            for (const auto until = std::chrono::steady_clock::now() + delay; std::chrono::steady_clock::now() < until;) {
            }
            signal.emit(asio::cancellation_type::terminal);
            co_await until([&] { return outcome.has_value() || dog.fired(); }, 30s);
            if (!outcome) break;  // the watchdog failed the test
            EXPECT_TRUE(*outcome == errc::cancelled || *outcome == asio::error::operation_aborted) << outcome->message();
            co_await sb.async_restore(clean);
        }
        EXPECT_FALSE(dog.fired());
    });
}

}  // namespace
