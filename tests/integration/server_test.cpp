// SPDX-License-Identifier: Apache-2.0
// 06_server under real requests: the guest functions over HTTP, unknown functions, paths and
// methods, pipelining, deadlines, shutdown, and the runtime's workers.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "server_support.hpp"

namespace {

using namespace std::chrono_literals;

using ServerTest = hl::test::server_test;
using hl::test::client;

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

TEST_F(ServerTest, MetricsCountTheGuestCallsByOutcomeInPrometheusText) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);
    EXPECT_EQ(c.call("/call/Sha256", "abd").status, 200);
    EXPECT_EQ(c.call("/call/ValidateJson", "[1,").status, 422);
    auto r = c.call("/metrics", "", "GET");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("hyperlight_calls_total{outcome=\"ok\"} 2\n"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("hyperlight_calls_total{outcome=\"guest_error\"} 1\n"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("# TYPE hyperlight_call_duration_seconds histogram"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("hyperlight_pool_size "), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("server_requests_total "), std::string::npos) << r.body;
    EXPECT_EQ(c.call("/metrics", "x", "POST").status, 405);
}

TEST_F(ServerTest, ATraceRecordsTheNextCallsOnRequest) {
    HL_REQUIRE_KVM();
    start();
    client c(endpoint_);
    EXPECT_EQ(c.call("/trace", "", "GET").body.find("call Sha256"), std::string::npos) << "nothing before POST";
    EXPECT_EQ(c.call("/trace?calls=2", "", "POST").status, 200);
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);
    EXPECT_EQ(c.call("/call/Profile", "ada").status, 200);
    EXPECT_EQ(c.call("/call/Sha256", "abd").status, 200);  // the third: not recorded
    auto r = c.call("/trace", "", "GET");
    EXPECT_EQ(r.status, 200);
    std::size_t calls = 0;
    const std::string needle = "\"name\":\"call ";
    for (auto at = r.body.find(needle); at != std::string::npos; at = r.body.find(needle, at + 1)) ++calls;
    EXPECT_EQ(calls, 2u) << r.body;
    EXPECT_NE(r.body.find("\"name\":\"host_call LookupUser\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"name\":\"queued Profile\""), std::string::npos) << r.body;
    EXPECT_EQ(c.call("/trace?calls=0", "", "POST").status, 400);
    EXPECT_EQ(c.call("/trace?calls=x1", "", "POST").status, 400);
    EXPECT_EQ(c.call("/trace", "", "PUT").status, 405);
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

TEST_F(ServerTest, AGuestCrashIs500AndTheSandboxIsRecycled) {
    HL_REQUIRE_KVM();
    start({}, {.min_size = 1, .max_size = 1});
    client c(endpoint_);
    auto r = c.call("/call/Crash", "x");
    EXPECT_EQ(r.status, 500);
    EXPECT_NE(r.body.find("page fault"), std::string::npos) << r.body;
    EXPECT_EQ(c.call("/call/Sha256", "abc").status, 200);  // the same, only sandbox, restored
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

namespace {

// The demo's handler scripts at POST /js/<function>: JSON in and out, from a script pool.
web::server_options with_javascript() {
    web::server_options o;
    std::ifstream in(HL_DEMO_HANDLERS_JS);
    std::stringstream text;
    text << in.rdbuf();
    o.javascript = web::script_handlers{HL_JSGUEST, "handlers.js", text.str()};
    return o;
}

TEST_F(ServerTest, HandlerScriptsAnswerJson) {
    HL_REQUIRE_KVM();
    start(with_javascript());
    client c(endpoint_);
    auto r = c.call("/js/order", R"({"id": 9, "items": [{"sku": "page", "price": 4, "qty": 2}]})");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, R"({"id":9,"total":8,"lines":["2 x page"]})");
    r = c.call("/js/profile", R"({"user": "ada"})");  // through the async host function fetchUser
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.body, R"({"html":"<h1>ada</h1><p>Ada wrote the first program, for an engine that was never built.</p>"})");
    r = c.call("/js/profile", R"({"user": "linus"})");  // escaped by the script
    EXPECT_EQ(r.body, R"({"html":"<h1>linus</h1><p>Linus &lt;torvalds&gt; started a kernel as a hobby.</p>"})");
}

TEST_F(ServerTest, HandlerScriptFailuresAreClientErrors) {
    HL_REQUIRE_KVM();
    start(with_javascript());
    client c(endpoint_);
    auto r = c.call("/js/order", R"({"id": 1, "items": [)");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("not valid JSON"), std::string::npos) << r.body;
    r = c.call("/js/profile", R"({"user": "nobody"})");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("no such user: nobody"), std::string::npos) << r.body;
    r = c.call("/js/profile", R"({"user": 42})");  // fetchUser refuses what is not a name
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("fetchUser takes a user name"), std::string::npos) << r.body;
    EXPECT_EQ(c.call("/js/nothing", "null").status, 404);
    EXPECT_EQ(c.call("/js/escapeHtml", "null").status, 200);  // any global function of the script
    EXPECT_EQ(c.call("/js/../call/Sha256", "abc").status, 404);
    EXPECT_EQ(c.call("/js/order", "", "GET").status, 405);
    EXPECT_EQ(c.call("/lua/order", "{}").status, 404);  // no Lua handlers were given
    EXPECT_EQ(c.call("/js/order", R"({"id": 2, "items": []})").body, R"({"id":2,"total":0,"lines":[]})");
}

TEST_F(ServerTest, AScriptThatDoesNotLoadStopsTheServersCreation) {
    HL_REQUIRE_KVM();
    web::server_options o;
    o.javascript = web::script_handlers{HL_JSGUEST, "broken.js", "function ("};
    auto created = asio::co_spawn(io_, web::http_server::create(HL_WEBGUEST, o, {.min_size = 1, .max_size = 1}),
                                  asio::use_future);
    thread_ = std::thread([this] { io_.run(); });
    try {
        created.get();
        ADD_FAILURE() << "the server started with a script that does not compile";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), hl::errc::guest_error);
        EXPECT_NE(std::string(e.what()).find("broken.js"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("SyntaxError"), std::string::npos) << e.what();
    }
}

}  // namespace
