// SPDX-License-Identifier: Apache-2.0
// 06_server under real requests: the guest functions over HTTP, and every way a client can get it
// wrong (unknown functions, malformed or oversized requests, slow clients, clients that leave
// mid-call, a full queue). After each, the server must still answer.
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/read.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>

#include <sys/socket.h>

#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "guest_paths.hpp"
#include "load.hpp"
#include "server.hpp"

namespace {

using namespace std::chrono_literals;

class ServerTest : public ::testing::Test {
protected:
    void TearDown() override { stop(); }

    void start(web::server_options options = {}, hl::pool_options pool = {.min_size = 2, .max_size = 2, .max_waiters = 8}) {
        options.endpoint.port(0);
        auto created = asio::co_spawn(io_, web::http_server::create(HL_WEBGUEST, options, pool), asio::use_future);
        thread_ = std::thread([this] { io_.run(); });
        server_.emplace(created.get());
        asio::post(io_, [this] { server_->start(); });
        endpoint_ = {asio::ip::address_v4::loopback(), server_->port()};
    }

    void stop() {
        if (server_) {
            asio::co_spawn(io_, server_->shutdown(), asio::use_future).get();
            asio::post(io_, [this] { server_.reset(); });
        }
        work_.reset();
        if (thread_.joinable()) thread_.join();
    }

    web::server_stats stats() { return server_->stats(); }
    hl::pool_stats pool_stats() { return server_->pool_stats(); }

    // Polls `done` for up to five seconds.
    template <class F>
    bool eventually(F done) {
        for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(10ms);
        return done();
    }

    asio::io_context io_{1};
    asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
    std::thread thread_;
    std::optional<hl::runtime> runtime_;  // for a test that gives the server its own; before server_, after io_
    std::optional<web::http_server> server_;
    asio::ip::tcp::endpoint endpoint_;
};

// A blocking test client on its own io_context.
class client {
public:
    explicit client(const asio::ip::tcp::endpoint& to) : socket_(io_) {
        socket_.connect(to);
        // A server that never answers fails the test instead of hanging it.
        const timeval timeout{.tv_sec = 10, .tv_usec = 0};
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    }

    void send(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }
    std::error_code try_send(std::string_view bytes) {
        std::error_code ec;
        asio::write(socket_, asio::buffer(bytes), ec);
        return ec;
    }

    // The next response; nullopt if the server closed the connection before one arrived.
    std::optional<web::http_message> receive(bool response_to_head = false) {
        reader_.reset(response_to_head);
        for (;;) {
            if (!pending_.empty()) pending_.erase(0, reader_.feed(pending_));
            if (reader_.status() == web::message_reader::state::complete) return reader_.message();
            if (reader_.status() == web::message_reader::state::failed) {
                ADD_FAILURE() << "bad response: " << reader_.error_text();
                return std::nullopt;
            }
            char chunk[4096];
            std::error_code ec;
            const std::size_t n = socket_.read_some(asio::buffer(chunk), ec);
            if (ec) return std::nullopt;
            pending_.append(chunk, n);
        }
    }

    web::http_message call(std::string_view target, std::string_view body, std::string_view method = "POST") {
        send(web::format_request(method, target, body));
        auto m = receive();
        if (!m) {
            ADD_FAILURE() << "no response to " << method << " " << target;
            return {};
        }
        return *m;
    }

    // True when the server closes the connection (EOF) with no further bytes.
    bool closed_by_server() {
        char c;
        std::error_code ec;
        const std::size_t n = socket_.read_some(asio::buffer(&c, 1), ec);
        return n == 0 && ec;
    }

    void close() { socket_.close(); }

private:
    asio::io_context io_;
    asio::ip::tcp::socket socket_;
    web::message_reader reader_{web::message_reader::kind::response, {.max_header_bytes = 16 << 10, .max_body_bytes = 1 << 20}};
    std::string pending_;
};

TEST_F(ServerTest, GuestFunctionsOverHttp) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    auto r = c.call("/call/Sha256", "abc");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // Two blocks of padding: 56 bytes is the first length that does not fit one.
    r = c.call("/call/Sha256", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
    EXPECT_EQ(r.body, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    r = c.call("/call/Render", "who=<Ada & co>\r\nn=3\r\n\r\nHi {{who}}, {{n}}!");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "Hi &lt;Ada &amp; co&gt;, 3!");
    r = c.call("/call/ValidateJson", R"({"a": [1, -2.5e3, true, null, "x\u00e9\n"], "b": {}})");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "valid JSON: 8 values, nesting depth 3");
    r = c.call("/call/Profile", "ada");  // through the async host function LookupUser
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "<h1>ada</h1><p>Ada wrote the first program, for an engine that was never built.</p>");
    r = c.call("/", "", "GET");
    EXPECT_EQ(r.status, 200);
    r = c.call("/stats", "", "GET");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("\"restores\":"), std::string::npos) << r.body;
}

TEST_F(ServerTest, GuestErrorsAre422WithTheGuestsMessage) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    auto r = c.call("/call/ValidateJson", R"({"a": [1, 2})");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("invalid JSON at byte 11: expected ',' or ']'"), std::string::npos) << r.body;
    r = c.call("/call/ValidateJson", std::string(65, '[') + std::string(65, ']'));
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("nested more than 64 levels deep"), std::string::npos) << r.body;
    r = c.call("/call/Render", "x=1\n\n{{y}}");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("undefined variable 'y'"), std::string::npos) << r.body;
    r = c.call("/call/Profile", "nobody");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("no user named 'nobody'"), std::string::npos) << r.body;
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);  // the connection and the pool carry on
}

TEST_F(ServerTest, UnknownFunctionsPathsAndMethodsAre4xx) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    EXPECT_EQ(c.call("/call/NoSuchFunction", "x").status, 404);
    EXPECT_EQ(c.call("/call/../../etc/passwd", "x").status, 404);
    EXPECT_EQ(c.call("/call/", "x").status, 404);
    EXPECT_EQ(c.call("/nothing/here", "x").status, 404);
    EXPECT_EQ(c.call("/call/Sha256", "", "GET").status, 405);
    EXPECT_EQ(c.call("/stats", "x", "POST").status, 405);
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);
    EXPECT_EQ(stats().status_4xx, 6u);
}

TEST_F(ServerTest, HeadGetsHeadersWithoutABody) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    c.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    c.send(web::format_request("POST", "/call/Sha256", "abc"));
    // The response to HEAD announces a length but carries no body: the next bytes are the next response.
    auto head = c.receive(true);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200);
    auto next = c.receive();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->status, 200);
    EXPECT_EQ(next->body.substr(0, 8), "ba7816bf");
}

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

TEST_F(ServerTest, AGuestCrashIs500AndTheSandboxIsRecycled) {
    HL_REQUIRE_KVM();
    start({}, {.min_size = 1, .max_size = 1});
    client c(endpoint_);
    auto r = c.call("/call/Crash", "x");
    EXPECT_EQ(r.status, 500);
    EXPECT_NE(r.body.find("page fault"), std::string::npos) << r.body;
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);  // the same, only sandbox, restored
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

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    c.send(web::format_request("POST", "/call/Sha256", "abc") + web::format_request("POST", "/call/Profile", "grace") +
           web::format_request("POST", "/call/NoSuchFunction", "x"));
    auto a = c.receive(), b = c.receive(), d = c.receive();
    ASSERT_TRUE(a && b && d);
    EXPECT_EQ(a->status, 200);
    EXPECT_EQ(a->body.substr(0, 8), "ba7816bf");
    EXPECT_EQ(b->status, 200);
    EXPECT_EQ(b->body.substr(0, 14), "<h1>grace</h1>");
    EXPECT_EQ(d->status, 404);
}

TEST_F(ServerTest, ARequestPipelinedDuringACallWaitsItsTurn) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.lookup_latency = 200ms;  // Profile's host function takes this long
    start(options);
    client c(endpoint_);
    c.send(web::format_request("POST", "/call/Profile", "ada"));
    ASSERT_TRUE(eventually([&] { return pool_stats().in_use == 1; }));
    c.send(web::format_request("POST", "/call/Sha256", "abc"));  // read by the disconnect watcher
    auto first = c.receive(), second = c.receive();
    ASSERT_TRUE(first && second);
    EXPECT_EQ(first->body.substr(0, 12), "<h1>ada</h1>");
    EXPECT_EQ(second->body.substr(0, 8), "ba7816bf");
    EXPECT_EQ(stats().disconnect_cancels, 0u);
}

TEST_F(ServerTest, ShutdownInterruptsCallsInFlight) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.deadline = 60s;
    start(options, {.min_size = 1, .max_size = 1});
    client c(endpoint_);
    c.send(web::format_request("POST", "/call/Runaway", "x"));
    ASSERT_TRUE(eventually([&] { return pool_stats().in_use == 1; }));
    const auto t0 = std::chrono::steady_clock::now();
    stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);  // not the 60 s deadline
    EXPECT_TRUE(c.closed_by_server());
}

TEST_F(ServerTest, ExpectContinueGetsAnInterimResponse) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    c.send("POST /call/Sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-Continue \r\n\r\n");
    auto interim = c.receive();
    ASSERT_TRUE(interim);
    EXPECT_EQ(interim->status, 100);
    c.send("abc");
    auto r = c.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, TheDeadlineStopsARunawayGuestWith504) {
    HL_REQUIRE_KVM();
    web::server_options options;
    options.deadline = 100ms;
    start(options, {.min_size = 1, .max_size = 1});
    client c(endpoint_);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = c.call("/call/Runaway", "x");
    EXPECT_EQ(r.status, 504);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
    EXPECT_EQ(stats().deadline_cancels, 1u);
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);  // the only sandbox was interrupted and restored
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

// The connections go to the runtime's workers in turn, and each is served on its worker: /stats
// says which worker answered, as the handler sees its own thread.
TEST_F(ServerTest, ConnectionsRunOnTheRuntimesWorkersInTurn) {
    HL_REQUIRE_KVM();
    runtime_.emplace(hl::runtime_options{.workers = 3});
    start({}, {.min_size = 3, .max_size = 3, .max_waiters = 8, .runtime = &*runtime_});
    EXPECT_EQ(server_->workers(), 3u);
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(std::make_unique<client>(endpoint_));
        auto r = clients.back()->call("/stats", "", "GET");
        EXPECT_NE(r.body.find("\"worker\":" + std::to_string(i % 3) + ","), std::string::npos) << i << ": " << r.body;
    }
    for (auto& c : clients) {  // a guest call, and one through the async host function, from every worker
        EXPECT_EQ(c->call("/call/Sha256", "abc").body, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        EXPECT_EQ(c->call("/call/Profile", "ada").body.substr(0, 12), "<h1>ada</h1>");
    }
}

// Shutdown closes each connection on its own worker, and interrupts the calls there.
TEST_F(ServerTest, ShutdownInterruptsCallsInFlightOnEveryWorker) {
    HL_REQUIRE_KVM();
    runtime_.emplace(hl::runtime_options{.workers = 2});
    web::server_options options;
    options.deadline = 60s;
    start(options, {.min_size = 2, .max_size = 2, .runtime = &*runtime_});
    client a(endpoint_), b(endpoint_);
    a.send(web::format_request("POST", "/call/Runaway", "x"));
    b.send(web::format_request("POST", "/call/Runaway", "x"));
    ASSERT_TRUE(eventually([&] { return pool_stats().in_use == 2; }));
    stop();
    EXPECT_TRUE(a.closed_by_server());
    EXPECT_TRUE(b.closed_by_server());
}

}  // namespace
