// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace hl {

/// Guest log levels, least to most severe (the wire protocol's LogLevel).
enum class log_level : std::uint8_t { trace, debug, info, warning, error, critical };

/// "trace", "debug", ... "critical".
const char* to_string(log_level level) noexcept;

/// One guest log record. The views are valid during the log handler's call only.
struct log_record {
    log_level level = log_level::info;
    std::string_view message;
    std::string_view file;
    std::uint32_t line = 0;
};

/// Receives guest text (printf, puts), byte for byte: whole lines, or a full buffer's worth when a line
/// is longer. Runs on the thread that drives the sandbox, in the middle of a guest call. Default: the
/// host's stdout, with every control character but newline and tab (and any byte that is not UTF-8)
/// shown as \xNN, so that the guest cannot send escape sequences to the terminal.
using print_handler = std::function<void(std::string_view text)>;

/// Receives guest log records at or above the sandbox's log level, with the guest's bytes. Runs on the
/// thread that drives the sandbox, in the middle of a guest call. Default: one line per record on the
/// host's stderr, with control characters (newlines too) in the message and file name shown as \xNN.
using log_handler = std::function<void(const log_record& record)>;

}  // namespace hl
