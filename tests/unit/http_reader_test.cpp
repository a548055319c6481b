// SPDX-License-Identifier: Apache-2.0
// 06_server's HTTP framing, without a server: byte-by-byte delivery, pipelining, limits, and
// mutated input that must always end in a message or a clear 4xx, never a crash.
#include <gtest/gtest.h>

#include <random>

#include "http.hpp"

namespace {

using web::message_reader;

// Feeds `bytes` in pieces of `step` bytes; returns how many bytes the message used.
std::size_t feed_in_steps(message_reader& r, std::string_view bytes, std::size_t step) {
    std::size_t used = 0;
    while (used < bytes.size() && r.status() != message_reader::state::complete && r.status() != message_reader::state::failed) {
        const std::size_t n = std::min(step, bytes.size() - used);
        const std::size_t took = r.feed(bytes.substr(used, n));
        used += took;
        if (took < n) break;  // the message ended (or failed) inside this piece
    }
    return used;
}

TEST(HttpReader, SameMessageWhateverTheSplit) {
    const std::string request = "POST /call/Render?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
    for (std::size_t step = 1; step <= request.size(); ++step) {
        message_reader r(message_reader::kind::request, {});
        EXPECT_EQ(feed_in_steps(r, request, step), request.size()) << "step " << step;
        ASSERT_EQ(r.status(), message_reader::state::complete) << "step " << step;
        EXPECT_EQ(r.message().method, "POST");
        EXPECT_EQ(r.message().target, "/call/Render?x=1");
        EXPECT_EQ(r.message().body, "hello world");
        EXPECT_TRUE(r.message().keep_alive);
    }
}

TEST(HttpReader, StopsAtTheEndOfEachPipelinedMessage) {
    const std::string one = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string two = "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    const std::string three = "GET /c HTTP/1.0\r\n\r\n";
    std::string stream = one + two + three;
    message_reader r(message_reader::kind::request, {});
    std::vector<std::string> targets, bodies;
    while (!stream.empty()) {
        r.reset();
        stream.erase(0, r.feed(stream));
        ASSERT_EQ(r.status(), message_reader::state::complete);
        targets.push_back(r.message().target);
        bodies.push_back(r.message().body);
    }
    EXPECT_EQ(targets, (std::vector<std::string>{"/a", "/b", "/c"}));
    EXPECT_EQ(bodies, (std::vector<std::string>{"", "abc", ""}));
    EXPECT_FALSE(r.message().keep_alive);  // HTTP/1.0 without keep-alive
}

TEST(HttpReader, LimitsGiveTheRightStatus) {
    web::http_limits limits{.max_header_bytes = 64, .max_body_bytes = 8};
    struct {
        std::string bytes;
        int status;
    } cases[] = {
        {"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", 413},                                      // announced
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\naaaaa\r\n5\r\naaaaa\r\n", 413},  // chunked
        {"GET /" + std::string(80, 'x') + " HTTP/1.1\r\n\r\n", 431},
        {"GET / HTTP/1.1\r\nX: " + std::string(80, 'y') + "\r\n\r\n", 431},
        {"GET / HTTP/9.9\r\n\r\n", 505},
        {"GET / HTTP/1.1 extra\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"\x01\x02\x03\r\n\r\n", 400},
        {"CONNECT a:443 HTTP/1.1\r\n\r\n", 405},
    };
    for (const auto& c : cases) {
        message_reader r(message_reader::kind::request, limits);
        r.feed(c.bytes);
        ASSERT_EQ(r.status(), message_reader::state::failed) << c.bytes;
        EXPECT_EQ(r.error_status(), c.status) << c.bytes << ": " << r.error_text();
        EXPECT_FALSE(r.error_text().empty());
    }
}

TEST(HttpReader, EndOfStreamMidMessageFails) {
    message_reader r(message_reader::kind::request, {});
    r.feed("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    r.feed_eof();
    EXPECT_EQ(r.status(), message_reader::state::failed);
    EXPECT_EQ(r.error_status(), 400);
    message_reader idle(message_reader::kind::request, {});
    idle.feed_eof();  // nothing started: not an error, just the end
    EXPECT_EQ(idle.status(), message_reader::state::incomplete);
}

TEST(HttpReader, ExpectContinueIsRecognisedLoosely) {
    for (const char* value : {"100-continue", "100-Continue", "100-continue \t"}) {
        message_reader r(message_reader::kind::request, {});
        r.feed(std::string("POST / HTTP/1.1\r\nContent-Length: 1\r\nExpect: ") + value + "\r\n\r\n");
        EXPECT_EQ(r.status(), message_reader::state::headers_done);
        EXPECT_TRUE(r.message().expect_continue) << value;
    }
    message_reader old(message_reader::kind::request, {});
    old.feed("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_FALSE(old.message().expect_continue);  // HTTP/1.0 clients get no interim response
}

TEST(HttpReader, ResponsesAndHead) {
    const std::string response = web::format_response(404, "text/plain", "nope\n", true, "Retry-After: 1\r\n");
    message_reader r(message_reader::kind::response, {});
    EXPECT_EQ(r.feed(response), response.size());
    ASSERT_EQ(r.status(), message_reader::state::complete);
    EXPECT_EQ(r.message().status, 404);
    EXPECT_EQ(r.message().body, "nope\n");
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    r.reset(true);
    EXPECT_EQ(r.feed(head + "HTTP/1.1"), head.size());  // no body: the next response starts right after
    EXPECT_EQ(r.status(), message_reader::state::complete);
}

// Random mutations of valid requests: each must end in a message, a failure with a 4xx, or a wait
// for more bytes, and feed() must never claim more bytes than it was given.
TEST(HttpReader, MutatedRequestsNeverMisbehave) {
    const std::string seeds[] = {
        "POST /call/Sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\nTrailer: t\r\n\r\n",
        "GET /stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    };
    std::mt19937 rng(1234);
    for (int iteration = 0; iteration < 20000; ++iteration) {
        std::string bytes = seeds[iteration % 3];
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = rng() % bytes.size();
            switch (rng() % 3) {
            case 0: bytes[at] = static_cast<char>(rng()); break;
            case 1: bytes.erase(at, 1 + rng() % 8); break;
            default: bytes.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng()))); break;
            }
            if (bytes.empty()) bytes = "x";
        }
        message_reader r(message_reader::kind::request, {.max_header_bytes = 256, .max_body_bytes = 64});
        const std::size_t used = feed_in_steps(r, bytes, 1 + rng() % 16);
        ASSERT_LE(used, bytes.size());
        if (r.status() == message_reader::state::failed) {
            EXPECT_TRUE((r.error_status() >= 400 && r.error_status() < 500) || r.error_status() == 505) << r.error_status();
        } else if (r.status() != message_reader::state::complete) {
            r.feed_eof();  // a message cut short by the end of the stream fails; nothing started is no message
            const bool cut_short = r.status() == message_reader::state::failed && r.error_status() == 400;
            EXPECT_TRUE(cut_short || (r.status() == message_reader::state::incomplete && !r.started()) ||
                        r.status() == message_reader::state::complete);
        }
    }
}

}  // namespace
