// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>

namespace hl::util {

/// Whether escape_controls() leaves newlines as they are.
enum class line_breaks { keep, escape };

/// `text` made safe to show on a terminal or to write as one line of a log: every byte of a C0
/// control character (except tab, and newline when `breaks` is keep), of DEL, of a C1 control in
/// its UTF-8 form (U+0080..U+009F) and every byte that is not part of well-formed UTF-8 becomes the
/// four characters \xNN (lower-case hex). Everything else, printable ASCII and well-formed UTF-8, is
/// copied as it is, so no escape sequence (ESC, CSI, OSC, BEL...) survives and nothing can begin a
/// new line unless allowed. Backslashes are not doubled: the result is for people to read.
std::string escape_controls(std::string_view text, line_breaks breaks);

}  // namespace hl::util
