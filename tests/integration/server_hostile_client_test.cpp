// SPDX-License-Identifier: Apache-2.0
// 06_server under clients that get it wrong: malformed, oversized or upgraded requests, slow
// clients, clients that leave mid-call, a full queue, too many connections. After each, the server
// must still answer.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "load.hpp"
#include "server_support.hpp"

namespace {

using namespace std::chrono_literals;

using ServerTest = hl::test::server_test;
using hl::test::client;

TEST_F(ServerTest, UpgradeIsIgnoredAndConnectRefused) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\n");
    c.send("abc");
    auto r = c.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body.substr(0, 8), "ba7816bf");
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);  // the connection carries on as HTTP/1.1
    client tunnel(endpoint_);
    tunnel.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    auto refused = tunnel.receive();
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 405);
}

TEST_F(ServerTest, MalformedRequestIs400AndClosesTheConnection) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    c.send("THIS IS NOT HTTP\r\n\r\n");
    auto r = c.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_FALSE(r->keep_alive);
    EXPECT_TRUE(c.closed_by_server());
    client again(endpoint_);
    EXPECT_EQ(again.call("/call/Sha256", "abc").status, 200);
}

TEST_F(ServerTest, OversizedBodiesAre413BeforeTheyAreRead) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.limits.max_body_bytes = 1024;
    start(options);
    {  // announced by Content-Length: refused without waiting for the body
        client c(endpoint_);
        c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n");
        auto r = c.receive();
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 413);
    }
    {  // chunked: refused once the chunks pass the limit
        client c(endpoint_);
        c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 3; ++i) c.send("200\r\n" + std::string(512, 'a') + "\r\n");
        auto r = c.receive();
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 413);
    }
    {  // within the limit, chunked is fine
        client c(endpoint_);
        c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n");
        auto r = c.receive();
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
        EXPECT_EQ(r->body, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
    {  // a client that keeps uploading after the 413 still gets it: the server drains before closing
        client c(endpoint_);
        c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
        const std::string chunk(16 << 10, 'u');
        for (int i = 0; i < 32; ++i) ASSERT_FALSE(c.try_send(chunk)) << "reset after " << i << " chunks";
        auto r = c.receive();
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 413);
    }
    client c(endpoint_);
    c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(10000, 'p') + "\r\n\r\n");
    auto r = c.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
}

TEST_F(ServerTest, SlowClientsGet408WhileOthersAreServed) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.request_timeout = 300ms;
    start(options);
    client slow(endpoint_);
    slow.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nContent-Le");  // and then nothing
    client idle(endpoint_);  // sends nothing at all: closed without an answer
    client fast(endpoint_);
    EXPECT_EQ(fast.call("/call/Sha256", "abc").status, 200);
    auto r = slow.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 408);
    EXPECT_TRUE(slow.closed_by_server());
    EXPECT_TRUE(idle.closed_by_server());
}

TEST_F(ServerTest, AClientLeavingMidCallInterruptsItsGuest) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.deadline = 60s;  // only the disconnect can stop it
    start(options, {.min_size = 1, .max_size = 1});
    {
        client c(endpoint_);
        c.send(web::format_request("POST", "/call/Runaway", "x"));
        ASSERT_TRUE(eventually([&] { return pool_stats().in_use == 1; }));
        c.close();
    }
    ASSERT_TRUE(eventually([&] { return stats().disconnect_cancels == 1; }));
    client next(endpoint_);
    EXPECT_EQ(next.call("/call/Sha256", "abc").status, 200);
    EXPECT_EQ(stats().deadline_cancels, 0u);
}

TEST_F(ServerTest, AFullQueueAnswers503) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.deadline = 60s;
    start(options, {.min_size = 1, .max_size = 1, .max_waiters = 1});
    client running(endpoint_), waiting(endpoint_), refused(endpoint_);
    running.send(web::format_request("POST", "/call/Runaway", "x"));
    ASSERT_TRUE(eventually([&] { return pool_stats().in_use == 1; }));
    waiting.send(web::format_request("POST", "/call/Sha256", "abc"));
    ASSERT_TRUE(eventually([&] { return pool_stats().waiters == 1; }));
    auto r = refused.call("/call/Sha256", "abc");
    EXPECT_EQ(r.status, 503);
    running.close();  // frees the sandbox: the waiter gets it
    auto w = waiting.receive();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->status, 200);
    EXPECT_EQ(refused.call("/call/Sha256", "abc").status, 200);
}

TEST_F(ServerTest, TooManyConnectionsAre503) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.max_connections = 2;
    start(options);
    client a(endpoint_), b(endpoint_);
    EXPECT_EQ(a.call("/call/Sha256", "abc").status, 200);
    EXPECT_EQ(b.call("/call/Sha256", "abc").status, 200);
    client c(endpoint_);
    auto r = c.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    a.close();
    ASSERT_TRUE(eventually([&] { return stats().open_connections == 1; }));
    client d(endpoint_);
    EXPECT_EQ(d.call("/call/Sha256", "abc").status, 200);
}

TEST_F(ServerTest, KeepsServingUnderLoadMixedWithHostileClients) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.deadline = 200ms;
    options.request_timeout = 300ms;
    start(options, {.min_size = 2, .max_size = 2, .max_waiters = 256});
    std::thread hostile([&] {
        for (int i = 0; i < 20; ++i) {
            client c(endpoint_);
            switch (i % 4) {
            case 0: c.send("NOT HTTP\r\n\r\n"); break;
            case 1: c.send("POST /call/Sha256 HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"); break;
            case 2: c.send(web::format_request("POST", "/call/Runaway", "x")); break;  // then leaves mid-call
            default: c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\n"); break;   // then leaves mid-request
            }
            std::this_thread::sleep_for(5ms);
        }
    });
    web::load_options load;
    load.target = endpoint_;
    load.requests = 600;
    load.connections = 6;
    load.runaway_every = 200;
    const web::load_report report = web::run_load(load);
    hostile.join();
    EXPECT_EQ(report.errors, 0u) << (report.error_samples.empty() ? "" : report.error_samples.front());
    EXPECT_EQ(report.requests, 600u);
    client c(endpoint_);
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);
    ASSERT_TRUE(eventually([&] { return stats().open_connections == 1; }));
}

}  // namespace
