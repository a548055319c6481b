// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

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
    EXPECT_LE(virtual_size_pages(), vsize + 4096) << "virtual size grew by more than 16 MiB";
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
