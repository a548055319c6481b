// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <system_error>

#include "hostile_support.hpp"

namespace {

hl::multi_use_sandbox make() { return hl::test::make_hostile(); }

}  // namespace

// ---- Hostile API use: a host function that destroys or moves away its own sandbox ----
//
// Destroying the sandbox inside its own host function must not free its memory and VM under the
// running call. Run in a child process (gtest's threadsafe death-test style re-runs this binary for
// just this test) so that a crash cannot take the rest of the suite with it.

namespace {

int destroy_inside_own_host_function(bool by_move) {
    std::optional<hl::multi_use_sandbox> sb;
    sb.emplace(make());
    sb->register_host_function("Nested", [&, by_move]() -> std::int64_t {
        try {
            if (by_move) {
                auto stolen = std::move(*sb);  // destroyed when this host function returns
            } else {
                sb.reset();
            }
        } catch (const hl::error&) {
            // Refusing is a fine answer too.
        }
        return 5;
    });
    std::error_code ec;
    try {
        if (sb) sb->call<std::int64_t>(ec, "CallNested");
    } catch (const hl::error&) {
    }
    // No crash, and the call that lost its sandbox says why.
    return ec == hl::errc::usage_error ? 0 : 3;
}

}  // namespace

class AttackApi : public ::testing::Test {
protected:
    void SetUp() override {
        HL_REQUIRE_KVM();
        GTEST_FLAG_SET(death_test_style, "threadsafe");
    }
};

TEST_F(AttackApi, DestroyingTheSandboxInsideItsOwnHostFunctionDoesNotCrashTheHost) {
    EXPECT_EXIT(std::exit(destroy_inside_own_host_function(false)), ::testing::ExitedWithCode(0), "");
}

TEST_F(AttackApi, MovingTheSandboxAwayInsideItsOwnHostFunctionDoesNotCrashTheHost) {
    EXPECT_EXIT(std::exit(destroy_inside_own_host_function(true)), ::testing::ExitedWithCode(0), "");
}
