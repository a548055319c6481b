// SPDX-License-Identifier: Apache-2.0
// What every integration test needs: the test guests built by this CMake, and a KVM check that skips
// with a message saying why when /dev/kvm cannot be used.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "hl/error.hpp"

namespace hl::test {

/// Empty when /dev/kvm can be opened read-write; otherwise why it cannot.
std::string kvm_unavailable_reason();

inline const char* simpleguest() { return HL_SIMPLEGUEST; }
inline const char* c_simpleguest() { return HL_C_SIMPLEGUEST; }
inline const char* hostileguest() { return HL_HOSTILEGUEST; }
#ifdef HL_TLSGUEST
inline const char* tlsguest() { return HL_TLSGUEST; }
#endif

/// The hl::errc that `f` fails with, or errc{} if it succeeds.
template <class F>
hl::errc error_of(F&& f) {
    try {
        f();
    } catch (const hl::error& e) {
        if (e.code().category() == hl::error_category()) return static_cast<hl::errc>(e.code().value());
        ADD_FAILURE() << "not an hl::errc: " << e.what();
    }
    return hl::errc{};
}

/// Number of open file descriptors of this process.
int open_fd_count();
/// Number of memory mappings of this process.
int mapping_count();

}  // namespace hl::test

#define HL_REQUIRE_KVM()                                                                    \
    do {                                                                                    \
        if (const std::string reason = ::hl::test::kvm_unavailable_reason(); !reason.empty()) \
            GTEST_SKIP() << "needs KVM, skipped: " << reason;                               \
    } while (0)
