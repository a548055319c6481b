// SPDX-License-Identifier: Apache-2.0
// The guest behind 06_server. Every function takes the request body and returns the response body,
// so the server can expose them all as POST /call/<function>. Each does real work on untrusted
// input; errors come back as hl::guest::error (HTTP 422).
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "hl/guest.hpp"

namespace {

using hl::guest::error;
using hl::guest::result;

// ---- Sha256: the hex SHA-256 digest of the body (FIPS 180-4). ----

constexpr std::uint32_t k_sha256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void sha256_block(std::uint32_t h[8], const unsigned char* p) {
    std::uint32_t w[64];
    for (int i = 0; i < 16; ++i) w[i] = std::uint32_t(p[4 * i]) << 24 | p[4 * i + 1] << 16 | p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
        const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; ++i) {
        const std::uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k_sha256[i] + w[i];
        const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

std::string sha256(std::string_view body) {
    std::uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const auto* data = reinterpret_cast<const unsigned char*>(body.data());
    std::size_t n = body.size();
    for (; n >= 64; n -= 64, data += 64) sha256_block(h, data);
    unsigned char tail[128] = {};
    for (std::size_t i = 0; i < n; ++i) tail[i] = data[i];
    tail[n] = 0x80;
    const std::size_t tail_size = n < 56 ? 64 : 128;
    const std::uint64_t bits = std::uint64_t(body.size()) * 8;
    for (int i = 0; i < 8; ++i) tail[tail_size - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
    for (std::size_t off = 0; off < tail_size; off += 64) sha256_block(h, tail + off);
    char hex[65];
    for (int i = 0; i < 8; ++i) std::snprintf(hex + 8 * i, 9, "%08x", static_cast<unsigned>(h[i]));
    return std::string(hex, 64);
}

// ---- Render: "name=value" lines, a blank line, then a template using {{name}}. ----

void append_escaped(std::string& out, std::string_view text) {
    for (char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
}

struct variable {
    std::string_view name, value;
};

result<std::string> render(std::string_view body) {
    constexpr std::size_t max_variables = 64;
    variable vars[max_variables];
    std::size_t count = 0;
    std::size_t line_no = 0;
    for (;;) {  // the variables, up to the first blank line
        const std::size_t eol = body.find('\n');
        if (eol == std::string_view::npos) return error{1, "no blank line between the variables and the template"};
        std::string_view line = body.substr(0, eol);
        body.remove_prefix(eol + 1);
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;
        const std::size_t eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            return error{1, "line " + std::to_string(line_no) + ": expected name=value"};
        }
        if (count == max_variables) return error{1, "more than 64 variables"};
        vars[count++] = {line.substr(0, eq), line.substr(eq + 1)};
    }
    std::string out;
    out.reserve(body.size() * 2);
    while (!body.empty()) {
        const std::size_t open = body.find("{{");
        out.append(body.substr(0, open));
        if (open == std::string_view::npos) break;
        body.remove_prefix(open + 2);
        const std::size_t close = body.find("}}");
        if (close == std::string_view::npos) return error{2, "unterminated {{ in the template"};
        const std::string_view name = body.substr(0, close);
        body.remove_prefix(close + 2);
        const variable* found = nullptr;
        for (std::size_t i = 0; i < count && !found; ++i) found = vars[i].name == name ? &vars[i] : nullptr;
        if (!found) return error{2, "the template uses an undefined variable '" + std::string(name) + "'"};
        append_escaped(out, found->value);
    }
    return out;
}

// ---- ValidateJson: RFC 8259 syntax, nesting limited to 64 levels. ----

class json_validator {
public:
    explicit json_validator(std::string_view text) : s_(text) {}

    result<std::string> run() {
        skip_space();
        if (!value(1)) return fail();
        skip_space();
        if (i_ != s_.size()) {
            problem_ = "unexpected data after the value";
            return fail();
        }
        return "valid JSON: " + std::to_string(values_) + " values, nesting depth " + std::to_string(max_depth_);
    }

private:
    static constexpr int max_nesting = 64;

    error fail() const { return error{3, "invalid JSON at byte " + std::to_string(i_) + ": " + problem_}; }
    bool expect(const char* what) {
        problem_ = what;
        return false;
    }
    char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
    void skip_space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool literal(std::string_view word) {
        if (s_.substr(i_, word.size()) != word) return expect("expected true, false or null");
        i_ += word.size();
        return true;
    }
    static bool digit(char c) { return c >= '0' && c <= '9'; }
    static bool hex(char c) { return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

    bool value(int depth) {
        ++values_;
        if (depth > max_depth_) max_depth_ = depth;
        switch (peek()) {
        case '{': return container(depth, '}');
        case '[': return container(depth, ']');
        case '"': return string();
        case 't': return literal("true");
        case 'f': return literal("false");
        case 'n': return literal("null");
        default: return number();
        }
    }

    bool container(int depth, char close) {
        if (depth > max_nesting) return expect("nested more than 64 levels deep");
        ++i_;
        skip_space();
        if (peek() == close) return ++i_, true;
        for (;;) {
            if (close == '}') {
                if (peek() != '"') return expect("expected a string as object key");
                if (!string()) return false;
                skip_space();
                if (peek() != ':') return expect("expected ':' after the key");
                ++i_;
                skip_space();
            }
            if (!value(depth + 1)) return false;
            skip_space();
            if (peek() == close) return ++i_, true;
            if (peek() != ',') return expect(close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
            ++i_;
            skip_space();
        }
    }

    bool string() {
        ++i_;  // the opening quote
        while (i_ < s_.size()) {
            const auto c = static_cast<unsigned char>(s_[i_++]);
            if (c == '"') return true;
            if (c < 0x20) return --i_, expect("control character in a string");
            if (c != '\\') continue;
            const char e = peek();
            ++i_;
            if (e == 'u') {
                for (int k = 0; k < 4; ++k, ++i_) {
                    if (!hex(peek())) return expect("expected four hex digits after \\u");
                }
            } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
                return --i_, expect("invalid escape in a string");
            }
        }
        return expect("unterminated string");
    }

    bool number() {
        if (peek() == '-') ++i_;
        if (peek() == '0') {
            ++i_;
        } else if (digit(peek())) {
            while (digit(peek())) ++i_;
        } else {
            return expect("expected a value");
        }
        if (peek() == '.') {
            ++i_;
            if (!digit(peek())) return expect("expected a digit after '.'");
            while (digit(peek())) ++i_;
        }
        if (peek() == 'e' || peek() == 'E') {
            ++i_;
            if (peek() == '+' || peek() == '-') ++i_;
            if (!digit(peek())) return expect("expected a digit in the exponent");
            while (digit(peek())) ++i_;
        }
        return true;
    }

    std::string_view s_;
    std::size_t i_ = 0;
    std::size_t values_ = 0;
    int max_depth_ = 0;
    const char* problem_ = "";
};

result<std::string> validate_json(std::string_view body) { return json_validator(body).run(); }

// ---- Profile: asks the host (an async host function) for a user record, renders it. ----

result<std::string> profile(std::string_view user) {
    auto record = hl::guest::call_host<std::string>("LookupUser", std::string(user));
    if (!record) return record.error();
    if (record->empty()) return error{4, "no user named '" + std::string(user) + "'"};
    std::string out = "<h1>";
    append_escaped(out, user);
    out += "</h1><p>";
    append_escaped(out, *record);
    out += "</p>";
    return out;
}

// ---- Misbehaviour, to show what the server does about it. ----

std::string runaway(std::string_view) {  // never returns: the server's deadline stops it
    for (;;) __asm__ volatile("" ::: "memory");
}

volatile std::uintptr_t unmapped_address = 0;  // opaque to the optimizer, which would drop a null dereference

std::string crash(std::string_view) {  // a page fault: the server answers 500, the pool recycles
    return std::to_string(*reinterpret_cast<volatile int*>(unmapped_address));
}

}  // namespace

extern "C" void hl_guest_init() {
    using hl::guest::register_function;
    register_function<sha256>("Sha256");
    register_function<render>("Render");
    register_function<validate_json>("ValidateJson");
    register_function<profile>("Profile");
    register_function<runaway>("Runaway");
    register_function<crash>("Crash");
}
