// SPDX-License-Identifier: Apache-2.0
#include "util/strfmt.hpp"

#include <gtest/gtest.h>

#include <string>

namespace hl::util {
namespace {

TEST(NameForMessage, KeepsANameOfUpTo256BytesWhole) {
    const std::string name(max_name_in_message, 'a');
    EXPECT_EQ(name_for_message(name), name);
    EXPECT_EQ(name_for_message("Echo"), "Echo");
}

TEST(NameForMessage, CutsALongerNameAndGivesItsFullLength) {
    const std::string name(10 * 1024 * 1024, 'b');
    EXPECT_EQ(name_for_message(name), std::string(max_name_in_message, 'b') + "... (10485760 bytes)");
    EXPECT_EQ(name_for_message(std::string(max_name_in_message + 1, 'c')),
              std::string(max_name_in_message, 'c') + "... (257 bytes)");
}

}  // namespace
}  // namespace hl::util
