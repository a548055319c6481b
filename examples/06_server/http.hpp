// SPDX-License-Identifier: Apache-2.0
// HTTP/1.1 framing for 06_server and its load generator, on Debian's http-parser: an incremental
// parser for one message at a time, with limits, and the formatting of requests and responses.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

struct http_parser;

namespace web {

struct http_limits {
    std::size_t max_header_bytes = 8 << 10;  ///< request line (or status line) plus headers
    std::size_t max_body_bytes = 16 << 10;   ///< after de-chunking
};

/// One parsed message. For requests: method, target; for responses: status.
struct http_message {
    std::string method;
    std::string target;
    int status = 0;
    std::string body;
    bool keep_alive = false;
    bool expect_continue = false;  ///< the client waits for "100 Continue" before sending the body
};

/// Parses one message at a time from a byte stream. feed() stops at the end of a message, so bytes
/// of a pipelined next message stay with the caller; reset() starts the next one.
class message_reader {
public:
    enum class kind { request, response };
    enum class state { incomplete, headers_done, complete, failed };

    message_reader(kind k, http_limits limits);
    ~message_reader();
    message_reader(const message_reader&) = delete;
    message_reader& operator=(const message_reader&) = delete;

    /// Starts the next message; for a response to HEAD, which has headers but never a body, say so.
    void reset(bool response_to_head = false);
    /// Consumes bytes of the current message; returns how many (fewer than given once it completes
    /// or fails).
    std::size_t feed(std::string_view bytes);
    /// The peer closed its side: completes a close-delimited body, or fails a partial message.
    void feed_eof();

    state status() const noexcept { return state_; }
    bool started() const noexcept { return started_; }
    /// When status() is failed: the HTTP status to answer with (400, 405, 413, 431 or 505) and why.
    int error_status() const noexcept { return error_status_; }
    const std::string& error_text() const noexcept { return error_text_; }
    http_message& message() noexcept { return message_; }

private:
    friend struct callbacks;
    bool fail(int status, std::string text);
    bool count_header_bytes(std::size_t n);

    kind kind_;
    http_limits limits_;
    std::unique_ptr<::http_parser> parser_;
    http_message message_;
    state state_ = state::incomplete;
    bool started_ = false;
    bool response_to_head_ = false;
    std::size_t header_bytes_ = 0;
    std::string field_;  // the header name being read, lower-cased
    bool field_done_ = false;
    std::string value_;
    int error_status_ = 0;
    std::string error_text_;
};

const char* reason_phrase(int status) noexcept;
/// A response with Content-Length; `extra_headers` are complete "Name: value\r\n" lines.
std::string format_response(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                            std::string_view extra_headers = {});
std::string format_request(std::string_view method, std::string_view target, std::string_view body,
                           bool keep_alive = true);

}  // namespace web
