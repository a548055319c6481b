// SPDX-License-Identifier: Apache-2.0
#include "http.hpp"

#include <http_parser.h>

#include <algorithm>
#include <cctype>

namespace web {

// http-parser calls back with plain function pointers; each finds its reader through parser->data.
// Returning non-zero stops the parser with an error.
struct callbacks {
    static message_reader& self(::http_parser* p) { return *static_cast<message_reader*>(p->data); }

    static int on_message_begin(::http_parser* p) {
        self(p).started_ = true;
        return 0;
    }
    static int on_url(::http_parser* p, const char* at, std::size_t n) {
        auto& r = self(p);
        if (!r.count_header_bytes(n)) return 1;
        r.message_.target.append(at, n);
        return 0;
    }
    static int on_status(::http_parser* p, const char*, std::size_t n) { return self(p).count_header_bytes(n) ? 0 : 1; }
    static int on_header_field(::http_parser* p, const char* at, std::size_t n) {
        auto& r = self(p);
        if (!r.count_header_bytes(n)) return 1;
        if (r.field_done_) {  // a new header begins: the previous one is complete
            end_header(r);
            r.field_.clear();
            r.value_.clear();
            r.field_done_ = false;
        }
        for (std::size_t i = 0; i < n; ++i) r.field_ += static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
        return 0;
    }
    static int on_header_value(::http_parser* p, const char* at, std::size_t n) {
        auto& r = self(p);
        if (!r.count_header_bytes(n)) return 1;
        r.field_done_ = true;
        if (r.field_ == "expect") r.value_.append(at, n);  // the only header the server looks at itself
        return 0;
    }
    static void end_header(message_reader& r) {
        if (r.field_ != "expect") return;
        std::string v = r.value_;
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
        r.message_.expect_continue = v == "100-continue";
    }
    static int on_headers_complete(::http_parser* p) {
        auto& r = self(p);
        if (r.field_done_) end_header(r);
        r.message_.method = r.kind_ == message_reader::kind::request ? http_method_str(static_cast<http_method>(p->method)) : "";
        r.message_.status = static_cast<int>(p->status_code);
        r.message_.keep_alive = http_should_keep_alive(p) != 0;
        if (p->http_major == 1 && p->http_minor == 0) r.message_.expect_continue = false;  // HTTP/1.0 has no 100
        if (r.kind_ == message_reader::kind::request && p->http_major != 1) {
            r.fail(505, "HTTP/" + std::to_string(p->http_major) + "." + std::to_string(p->http_minor) + " is not supported");
            return -1;
        }
        if (r.kind_ == message_reader::kind::request && p->method == HTTP_CONNECT) {
            r.fail(405, "CONNECT is not supported");
            return -1;
        }
        // Content-Length is known now: refuse an oversized body before reading it.
        if ((p->flags & F_CONTENTLENGTH) && p->content_length > r.limits_.max_body_bytes) {
            r.fail(413, "the body is larger than " + std::to_string(r.limits_.max_body_bytes) + " bytes");
            return -1;  // 1 and 2 would mean "no body", not an error
        }
        r.state_ = message_reader::state::headers_done;
        return r.response_to_head_ ? 1 : 0;  // 1: this message has no body
    }
    static int on_body(::http_parser* p, const char* at, std::size_t n) {
        auto& r = self(p);
        if (r.message_.body.size() + n > r.limits_.max_body_bytes) {
            r.fail(413, "the body is larger than " + std::to_string(r.limits_.max_body_bytes) + " bytes");
            return 1;
        }
        r.message_.body.append(at, n);
        return 0;
    }
    static int on_message_complete(::http_parser* p) {
        self(p).state_ = message_reader::state::complete;
        http_parser_pause(p, 1);  // stop here: what follows belongs to the next message
        return 0;
    }

    static const http_parser_settings settings;
};

const http_parser_settings callbacks::settings = {
    .on_message_begin = callbacks::on_message_begin,
    .on_url = callbacks::on_url,
    .on_status = callbacks::on_status,
    .on_header_field = callbacks::on_header_field,
    .on_header_value = callbacks::on_header_value,
    .on_headers_complete = callbacks::on_headers_complete,
    .on_body = callbacks::on_body,
    .on_message_complete = callbacks::on_message_complete,
    .on_chunk_header = nullptr,
    .on_chunk_complete = nullptr,
};

message_reader::message_reader(kind k, http_limits limits)
    : kind_(k), limits_(limits), parser_(std::make_unique<::http_parser>()) {
    reset();
}

message_reader::~message_reader() = default;

void message_reader::reset(bool response_to_head) {
    response_to_head_ = response_to_head && kind_ == kind::response;
    http_parser_init(parser_.get(), kind_ == kind::request ? HTTP_REQUEST : HTTP_RESPONSE);
    parser_->data = this;
    message_ = {};
    state_ = state::incomplete;
    started_ = false;
    header_bytes_ = 0;
    field_.clear();
    value_.clear();
    field_done_ = false;
    error_status_ = 0;
    error_text_.clear();
}

bool message_reader::fail(int status, std::string text) {
    if (state_ != state::failed) {
        state_ = state::failed;
        error_status_ = status;
        error_text_ = std::move(text);
    }
    return false;
}

bool message_reader::count_header_bytes(std::size_t n) {
    header_bytes_ += n;
    if (header_bytes_ <= limits_.max_header_bytes) return true;
    return fail(431, "the request line and headers are larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
}

std::size_t message_reader::feed(std::string_view bytes) {
    if (state_ == state::complete || state_ == state::failed || bytes.empty()) return 0;
    const std::size_t used = http_parser_execute(parser_.get(), &callbacks::settings, bytes.data(), bytes.size());
    const auto err = HTTP_PARSER_ERRNO(parser_.get());
    // An Upgrade request is served as a plain request (RFC 9110 allows ignoring Upgrade): the parser
    // stops after it, and the next message gets a fresh parser from reset().
    if (err == HPE_PAUSED) {
        http_parser_pause(parser_.get(), 0);
    } else if (err != HPE_OK) {
        fail(400, std::string("malformed HTTP: ") + http_errno_description(err));
    }
    return used;
}

void message_reader::feed_eof() {
    if (state_ == state::complete || state_ == state::failed) return;
    http_parser_execute(parser_.get(), &callbacks::settings, nullptr, 0);
    if (state_ != state::complete && started_) fail(400, "the connection closed in the middle of a message");
}

const char* reason_phrase(int status) noexcept {
    switch (status) {
#define HL_WEB_REASON(num, name, text) \
    case num: return #text;
        HTTP_STATUS_MAP(HL_WEB_REASON)
#undef HL_WEB_REASON
    default: return "Unknown";
    }
}

std::string format_response(int status, std::string_view content_type, std::string_view body, bool keep_alive,
                            std::string_view extra_headers) {
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
    out += "Content-Type: ";
    out += content_type;
    out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    out += extra_headers;
    out += "\r\n";
    out += body;
    return out;
}

std::string format_request(std::string_view method, std::string_view target, std::string_view body, bool keep_alive) {
    std::string out;
    out.reserve(body.size() + 128);
    out += method;
    out += ' ';
    out += target;
    out += " HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    if (!keep_alive) out += "Connection: close\r\n";
    out += "\r\n";
    out += body;
    return out;
}

}  // namespace web
