// SPDX-License-Identifier: Apache-2.0
// The consumer's guest. The checks below fail the build if the host's flags reached it or if its own
// options lost to the SDK's.
#include <hl/guest.hpp>

#if defined(CONSUMER_HOST_OPTION) || defined(CONSUMER_CXX_FLAGS) || defined(NDEBUG)
#error "the consuming project's host flags reached the guest"
#endif
#ifndef CONSUMER_GUEST_OPTION
#error "hl_add_guest(COMPILE_OPTIONS) did not reach the guest"
#endif
#ifndef __OPTIMIZE_SIZE__
#error "target_compile_options(-Os) on the guest lost to the SDK's -O2"
#endif

namespace {

std::int32_t add(std::int32_t a, std::int32_t b) { return a + b; }

std::string greet(std::string_view who) {
    std::string greeting = "hello, ";
    greeting += who;
    return greeting;
}

}  // namespace

extern "C" void hl_guest_init() {
    hl::guest::register_function<add>("Add");
    hl::guest::register_function<greet>("Greet");
}
