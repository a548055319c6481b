// SPDX-License-Identifier: Apache-2.0
// For tests that attack isolation with the hostile guest: what a clean sandbox looks like.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace hl::test {

/// A fixture for attacks with the hostile guest: skipped where there is no KVM.
class attack_test : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

/// hostileguest's canary after initialisation; its landing area is zero.
inline constexpr std::int64_t canary_value = 0x5a5a'5a5a;

inline hl::multi_use_sandbox make_hostile() {
    return hl::uninitialized_sandbox::from_file(hostileguest()).evolve();
}

/// The snapshot's state, seen through the guest's own functions: the call runs its own function
/// (echoes `token`), and nothing an earlier task wrote is left.
inline void expect_clean(hl::multi_use_sandbox& sb, std::int64_t token) {
    EXPECT_EQ(sb.call<std::int64_t>("Identity", token), token);
    EXPECT_EQ(sb.call<std::int64_t>("ReadCanary"), canary_value);
    EXPECT_EQ(sb.call<std::int64_t>("LandingSum"), 0);
    EXPECT_FALSE(sb.poisoned());
}

}  // namespace hl::test
