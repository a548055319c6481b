// SPDX-License-Identifier: Apache-2.0
// A guest that uses thread_local, which guests do not support: the loader must refuse it. Its
// registration is written exactly as the example at the top of hl/guest.hpp, so that it compiles.
#include <cstddef>
#include <string>
#include <string_view>

#include "hl/guest.hpp"

thread_local std::size_t echoed_bytes = 0;

std::string echo(std::string_view s) {
    echoed_bytes += s.size();
    return std::string(s);
}

void hl_guest_init() { hl::guest::register_function<echo>("Echo"); }
