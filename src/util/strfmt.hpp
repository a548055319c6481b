// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>
#include <string_view>

namespace hl::util {

/// printf-style formatting into a std::string (libstdc++ 12 has no <format>).
[[gnu::format(printf, 1, 2)]] inline std::string strfmt(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    va_list copy;
    va_copy(copy, args);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    std::string out(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
    if (n > 0) std::vsnprintf(out.data(), out.size() + 1, fmt, args);
    va_end(args);
    return out;
}

/// The most bytes of a name that an error message shows.
inline constexpr std::size_t max_name_in_message = 256;

/// `name` as an error message shows it: whole up to max_name_in_message bytes, otherwise cut there
/// with "..." and the full length, so a caller's or guest's huge name cannot make a huge message.
inline std::string name_for_message(std::string_view name) {
    if (name.size() <= max_name_in_message) return std::string(name);
    return std::string(name.substr(0, max_name_in_message)) + strfmt("... (%zu bytes)", name.size());
}

}  // namespace hl::util
