// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"
#include "resource_limits.hpp"

namespace {

using hl::errc;

long virtual_size_pages() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0;
    statm >> pages;
    return pages;
}

std::vector<std::byte> file_bytes(const char* path) {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(chars.size());
    for (std::size_t i = 0; i < chars.size(); ++i) out[i] = static_cast<std::byte>(chars[i]);
    return out;
}

TEST(Lifecycle, CreatingAndDroppingTwoHundredSandboxesLeaksNoDescriptorsOrMappings) {
    HL_REQUIRE_KVM();
    auto cycle = [] {
        auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
        ASSERT_EQ(sb.call<std::int32_t>("AddLocal", 2, 3), 5);
    };
    for (int i = 0; i < 5; ++i) cycle();  // first-use allocations (the KVM handle, capstone, heap arenas)
    const int fds = hl::test::open_fd_count();
    const int maps = hl::test::mapping_count();
    const long vsize = virtual_size_pages();
    for (int i = 0; i < 200; ++i) cycle();
    EXPECT_EQ(hl::test::open_fd_count(), fds);
    EXPECT_LE(hl::test::mapping_count(), maps + 2);
    // ASan's allocator keeps freed memory in quarantine (256 MiB by default), so the address space
    // grows by design there; LeakSanitizer checks the heap in that build instead.
    if (!hl::test::sanitized_build) {
        EXPECT_LE(virtual_size_pages(), vsize + 4096) << "virtual size grew by more than 16 MiB";
    }
}

TEST(Lifecycle, DroppingAnUninitializedSandboxLeaksNothing) {
    const int fds = hl::test::open_fd_count();
    for (int i = 0; i < 50; ++i) (void)hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    EXPECT_EQ(hl::test::open_fd_count(), fds);
}

TEST(Lifecycle, LoadsAGuestFromBytes) {
    HL_REQUIRE_KVM();
    auto sb = hl::uninitialized_sandbox::from_bytes(file_bytes(hl::test::c_simpleguest())).evolve();
    EXPECT_EQ(sb.call<std::string>("Echo", std::string("from bytes")), "from bytes");
}

TEST(Lifecycle, SandboxesAreIndependent) {
    HL_REQUIRE_KVM();
    auto a = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    auto b = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    EXPECT_EQ(a.call<std::int32_t>("IncrementCounter"), 1);
    EXPECT_EQ(a.call<std::int32_t>("IncrementCounter"), 2);
    EXPECT_EQ(b.call<std::int32_t>("IncrementCounter"), 1);
}

TEST(Lifecycle, AMovedSandboxKeepsWorking) {
    HL_REQUIRE_KVM();
    auto a = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    EXPECT_EQ(a.call<std::int32_t>("IncrementCounter"), 1);
    hl::multi_use_sandbox b = std::move(a);
    EXPECT_EQ(b.call<std::int32_t>("IncrementCounter"), 2);
}

// A usage_error whose message says what happened, or a failure.
::testing::AssertionResult usage_error(const std::function<void()>& f, const char* says) {
    try {
        f();
    } catch (const hl::error& e) {
        if (e.code() != errc::usage_error) return ::testing::AssertionFailure() << "not a usage_error: " << e.what();
        if (std::string(e.what()).find(says) == std::string::npos) {
            return ::testing::AssertionFailure() << "\"" << e.what() << "\" does not say \"" << says << "\"";
        }
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "did not fail";
}

TEST(Lifecycle, AMovedFromSandboxFailsWithAUsageErrorInsteadOfCrashing) {
    HL_REQUIRE_KVM();
    auto a = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    const auto snap = a.snapshot();
    hl::multi_use_sandbox b = std::move(a);
    const char* moved = "moved from";
    EXPECT_TRUE(usage_error([&] { a.call<std::int32_t>("AddLocal", 1, 2); }, moved));
    EXPECT_TRUE(usage_error([&] { a.call_for<std::int32_t>(std::chrono::seconds(1), "AddLocal", 1, 2); }, moved));
    EXPECT_TRUE(usage_error([&] { a.call_with_restore<std::int32_t>(snap, "AddLocal", 1, 2); }, moved));
    EXPECT_TRUE(usage_error([&] { a.snapshot(); }, moved));
    EXPECT_TRUE(usage_error([&] { a.restore(snap); }, moved));
    EXPECT_TRUE(usage_error([&] { a.interrupt_handle(); }, moved));
    EXPECT_TRUE(usage_error([&] { a.register_host_function("HostAdd", [](std::int32_t x, std::int32_t) { return x; }); }, moved));
    EXPECT_TRUE(usage_error([&] { a.set_print_handler([](std::string_view) {}); }, moved));
    EXPECT_TRUE(usage_error([&] { a.set_log_handler([](const hl::log_record&) {}); }, moved));
    EXPECT_TRUE(usage_error([&] { a.set_log_level(hl::log_level::trace); }, moved));
    std::error_code ec;
    EXPECT_EQ(a.call<std::int32_t>(ec, "AddLocal", 1, 2), 0);
    EXPECT_EQ(ec, errc::usage_error);
    EXPECT_NE(a.last_error().find(moved), std::string::npos) << a.last_error();
    EXPECT_TRUE(a.poisoned()) << "a moved-from sandbox cannot run calls";

    EXPECT_EQ(b.call<std::int32_t>("AddLocal", 1, 2), 3);
    a = std::move(b);  // a moved-from sandbox can be assigned again
    EXPECT_EQ(a.call<std::int32_t>("AddLocal", 2, 2), 4);
}

TEST(Lifecycle, AMovedFromOrEvolvedUninitializedSandboxFailsWithAUsageError) {
    HL_REQUIRE_KVM();
    auto u = hl::uninitialized_sandbox::from_file(hl::test::simpleguest());
    auto v = std::move(u);
    const char* moved = "moved from";
    EXPECT_TRUE(usage_error([&] { std::move(u).evolve(); }, moved));
    EXPECT_TRUE(usage_error([&] { u.register_host_function("HostAdd", [](std::int32_t x, std::int32_t) { return x; }); }, moved));
    EXPECT_TRUE(usage_error([&] { u.set_print_handler([](std::string_view) {}); }, moved));
    EXPECT_TRUE(usage_error([&] { u.set_log_handler([](const hl::log_record&) {}); }, moved));
    EXPECT_TRUE(usage_error([&] { u.set_log_level(hl::log_level::trace); }, moved));
    auto sb = std::move(v).evolve();
    EXPECT_TRUE(usage_error([&] { std::move(v).evolve(); }, moved));
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 1, 2), 3);
}

TEST(Lifecycle, NullArgumentsAreUsageErrors) {
    HL_REQUIRE_KVM();
    auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest()).evolve();
    EXPECT_TRUE(usage_error([&] { sb.restore(nullptr); }, "null"));
    EXPECT_TRUE(usage_error([&] { hl::multi_use_sandbox::from_snapshot(nullptr); }, "null"));
    std::int32_t (*no_function)(std::int32_t, std::int32_t) = nullptr;
    EXPECT_TRUE(usage_error([&] { sb.register_host_function("HostAdd", no_function); }, "'HostAdd'"));
    EXPECT_TRUE(usage_error([&] { sb.register_host_function("HostAdd", std::function<std::int32_t(std::int32_t, std::int32_t)>{}); },
                            "empty"));
    EXPECT_TRUE(usage_error([&] { sb.register_host_function("HostAdd", hl::host_function{}); }, "empty"));
    const char* no_text = nullptr;
    EXPECT_TRUE(usage_error([&] { sb.call<std::string>("Echo", no_text); }, "null character pointer"));
    std::error_code ec;
    EXPECT_EQ(sb.call<std::string>(ec, "Echo", no_text), "");
    EXPECT_EQ(ec, errc::usage_error);
    EXPECT_NE(sb.last_error().find("null character pointer"), std::string::npos) << sb.last_error();
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call<std::string>("HandleHostError", std::string("HostAdd")),
              "handled: the guest called host function 'HostAdd', which the host has not registered")
        << "nothing was registered";
}

TEST(Lifecycle, AMissingGuestFileIsAnInvalidGuest) {
    try {
        (void)hl::uninitialized_sandbox::from_file("/nonexistent/guest.elf");
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_guest);
        EXPECT_NE(std::string(e.what()).find("/nonexistent/guest.elf"), std::string::npos) << e.what();
    }
}

TEST(Lifecycle, AHostExecutableIsAnInvalidGuest) {
    try {
        (void)hl::uninitialized_sandbox::from_file("/proc/self/exe");
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_guest) << e.what();
    }
}

TEST(Lifecycle, AGuestThatUsesThreadLocalIsRefusedWhenLoaded) {
    try {
        (void)hl::uninitialized_sandbox::from_file(hl::test::tlsguest());
        FAIL() << "a guest with thread-local storage was loaded; it would fault at its first access";
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_guest) << e.what();
        EXPECT_NE(std::string(e.what()).find("thread-local storage"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("not support"), std::string::npos) << e.what();
    }
}

TEST(Lifecycle, GarbageBytesAreAnInvalidGuest) {
    const std::vector<std::byte> garbage(100, std::byte{0x42});
    try {
        (void)hl::uninitialized_sandbox::from_bytes(garbage);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_guest) << e.what();
    }
}

TEST(Lifecycle, AnOutOfRangeConfigurationNamesTheField) {
    hl::sandbox_config config;
    config.heap_size = 0;
    try {
        (void)hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::invalid_config);
        EXPECT_NE(std::string(e.what()).find("heap_size"), std::string::npos) << e.what();
    }
}

}  // namespace
