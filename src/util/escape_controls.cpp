// SPDX-License-Identifier: Apache-2.0
#include "util/escape_controls.hpp"

#include <cstddef>
#include <cstdint>
#include <iterator>

namespace hl::util {
namespace {

/// The length of the well-formed UTF-8 sequence at the start of `s` (RFC 3629: no overlong forms,
/// no surrogates, nothing past U+10FFFF), or 0 if it is not one. `s` starts with a byte >= 0x80.
std::size_t utf8_sequence(std::string_view s, std::uint32_t& code_point) {
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    struct form {
        unsigned char first_lead, last_lead, payload_mask;
        std::uint32_t smallest;
    };
    static constexpr form forms[] = {{0xc2, 0xdf, 0x1f, 0x80}, {0xe0, 0xef, 0x0f, 0x800}, {0xf0, 0xf4, 0x07, 0x10000}};
    std::size_t length = 0;
    std::uint32_t smallest = 0;
    for (std::size_t f = 0; f < std::size(forms); ++f) {
        if (b(0) >= forms[f].first_lead && b(0) <= forms[f].last_lead) {
            length = f + 2;
            smallest = forms[f].smallest;
            code_point = b(0) & forms[f].payload_mask;
        }
    }
    if (length == 0 || s.size() < length) return 0;
    for (std::size_t i = 1; i < length; ++i) {
        if ((b(i) & 0xc0) != 0x80) return 0;
        code_point = (code_point << 6) | (b(i) & 0x3f);
    }
    if (code_point < smallest || code_point > 0x10ffff || (code_point >= 0xd800 && code_point <= 0xdfff)) return 0;
    return length;
}

void append_escaped(std::string& out, unsigned char byte) {
    static constexpr char digits[] = "0123456789abcdef";
    out += "\\x";
    out += digits[byte >> 4];
    out += digits[byte & 0xf];
}

}  // namespace

std::string escape_controls(std::string_view text, line_breaks breaks) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if (byte < 0x80) {
            const bool allowed = byte == '\t' || (byte == '\n' && breaks == line_breaks::keep);
            if ((byte < 0x20 && !allowed) || byte == 0x7f) {
                append_escaped(out, byte);
            } else {
                out += static_cast<char>(byte);
            }
            ++i;
            continue;
        }
        std::uint32_t code_point = 0;
        const std::size_t length = utf8_sequence(text.substr(i), code_point);
        if (length == 0) {
            append_escaped(out, byte);
            ++i;
        } else if (code_point <= 0x9f) {  // a C1 control: U+0080..U+009F
            for (std::size_t k = 0; k < length; ++k) append_escaped(out, static_cast<unsigned char>(text[i + k]));
            i += length;
        } else {
            out.append(text.substr(i, length));
            i += length;
        }
    }
    return out;
}

}  // namespace hl::util
