// SPDX-License-Identifier: Apache-2.0
// A sandbox created at the process's file-descriptor limit or its address-space limit: every way
// creation can run out fails with a clear error, leaks nothing, and the next creation after the
// limit is lifted works.
#include <gtest/gtest.h>

#include <string>

#include "guest_paths.hpp"
#include "hl/sandbox.hpp"
#include "resource_limits.hpp"

namespace {

// Creates a sandbox and calls it; "" on success, else the error's message. A limit is the host's
// state: it must never be reported as a fault of the guest or of the configuration.
std::string try_sandbox(const hl::sandbox_config& config = {}) {
    try {
        auto sb = hl::uninitialized_sandbox::from_file(hl::test::simpleguest(), config).evolve();
        EXPECT_EQ(sb.call<std::int32_t>("EchoInt32", 7), 7);
        return "";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().category(), std::system_category()) << e.what();
        return e.what();
    }
}

class Limits : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

// Each step of creation that opens a descriptor (the guest file, /dev/kvm, the VM, the memory
// file, the vCPU, ...) fails in turn as the limit rises one at a time.
TEST_F(Limits, AtTheFileDescriptorLimitCreationFailsClearlyAtEveryStepAndLeaksNothing) {
    if (hl::test::vptr_check_needs_descriptors) {
        GTEST_SKIP() << "clang's UBSan checks each vptr through a pipe, which the descriptor limit refuses";
    }
    ASSERT_EQ(try_sandbox(), "");
    const hl::test::packed_descriptors packed;
    const int baseline = hl::test::open_fd_count();
    int failures = 0;
    for (int room = 0; room < 16; ++room) {
        std::string message;
        {
            hl::test::scoped_limit limit(RLIMIT_NOFILE, static_cast<rlim_t>(packed.next() + room));
            message = try_sandbox();
        }
        if (message.empty()) break;
        ++failures;
        EXPECT_NE(message.find("open files"), std::string::npos) << "room " << room << ": " << message;
        EXPECT_NE(message.find("ulimit -n"), std::string::npos) << "room " << room << ": " << message;
        EXPECT_EQ(hl::test::open_fd_count(), baseline) << "room " << room << ": " << message;
    }
    EXPECT_GE(failures, 2) << "creation needs a VM and a vCPU descriptor at least";
    EXPECT_EQ(try_sandbox(), "");
    EXPECT_EQ(hl::test::open_fd_count(), baseline);
}

// With too little address space for the guest's memory, creation fails and says so; nothing is
// left mapped, and the same sandbox can be created once the limit is lifted.
TEST_F(Limits, AtTheAddressSpaceLimitCreationFailsClearlyAndLeaksNothing) {
    if (hl::test::sanitized_build) GTEST_SKIP() << "the sanitizers reserve more address space than any limit allows";
    const auto config = hl::sandbox_config{}.set_heap_size(256u << 20);
    ASSERT_EQ(try_sandbox(config), "");
    const int maps = hl::test::mapping_count();
    const int fds = hl::test::open_fd_count();
    std::string message;
    {
        hl::test::scoped_limit limit(RLIMIT_AS, hl::test::address_space_bytes() + (64u << 20));
        message = try_sandbox(config);
    }
    EXPECT_FALSE(message.empty()) << "a 256 MiB guest fit in 64 MiB of address space";
    EXPECT_NE(message.find("ulimit -v"), std::string::npos) << message;
    EXPECT_EQ(hl::test::mapping_count(), maps) << message;
    EXPECT_EQ(hl::test::open_fd_count(), fds) << message;
    EXPECT_EQ(try_sandbox(config), "");
}

}  // namespace
