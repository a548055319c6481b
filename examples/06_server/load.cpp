// SPDX-License-Identifier: Apache-2.0
#include "load.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>

#include "http.hpp"

namespace web {

namespace {

using asio::awaitable;
using clock = std::chrono::steady_clock;
constexpr auto as_tuple = asio::experimental::as_tuple(asio::use_awaitable);

struct planned {
    std::string target;
    std::string body;
    int status = 200;
    std::string expect_body;  ///< empty: any body
};

std::uint64_t mix(std::uint64_t x) {  // splitmix64: varied, reproducible bodies
    x += 0x9e3779b97f4a7c15;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
    x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
    return x ^ (x >> 31);
}

std::string words(std::uint64_t seed, std::size_t count) {
    static constexpr const char* vocabulary[] = {"alpha", "kernel", "guest", "page", "vcpu", "snapshot", "restore", "ring"};
    std::string out;
    for (std::size_t i = 0; i < count; ++i) {
        if (i) out += ' ';
        out += vocabulary[mix(seed + i) % 8];
    }
    return out;
}

// A request for the demo's handler scripts (handlers/handlers.js, handlers/handlers.lua): an order
// to total, a profile page through the async host function, now and then a body that is not JSON.
planned script_request(const char* prefix, bool exact, std::uint64_t i, std::uint64_t r) {
    const std::string base = prefix;
    if (i % 7 == 3) return {base + "order", "{\"id\": 1, \"items\": [", 422, {}};
    if (i % 2 == 0) {
        return {base + "profile", "{\"user\": \"grace\"}", 200,
                exact ? "{\"html\":\"<h1>grace</h1><p>Grace made the first compiler &amp; found the first bug (a "
                        "moth).</p>\"}"
                      : ""};
    }
    const std::uint64_t qty = 1 + r % 5, price = 2 + r % 7;
    const std::string sku = words(r, 1);
    return {base + "order",
            "{\"id\": " + std::to_string(i) + ", \"items\": [{\"sku\": \"" + sku + "\", \"price\": " +
                std::to_string(price) + ", \"qty\": " + std::to_string(qty) + "}, {\"sku\": \"ring\", \"price\": 3, \"qty\": 1}]}",
            200,
            exact ? "{\"id\":" + std::to_string(i) + ",\"total\":" + std::to_string(price * qty + 3) + ",\"lines\":[\"" +
                        std::to_string(qty) + " x " + sku + "\",\"1 x ring\"]}"
                  : ""};
}

planned plan(std::uint64_t i, const load_options& options) {
    const std::uint64_t runaway_every = options.runaway_every;
    if (runaway_every && i % runaway_every == runaway_every - 1) return {"/call/Runaway", "spin", 504, {}};
    if (i % 100 == 37) return {"/call/NoSuchFunction", "x", 404, {}};
    if (i % 100 == 73) return {"/call/ValidateJson", "{\"open\": [1, 2", 422, {}};
    const std::uint64_t r = mix(i);
    switch (i % 10) {
    case 0: return {"/call/Sha256", "abc", 200, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"};
    case 1:
    case 2:
    case 3: return {"/call/Sha256", words(r, 32 + r % 200), 200, {}};
    case 4:
    case 5: {
        const std::string who = words(r, 2);
        return {"/call/Render", "name=" + who + "\nn=" + std::to_string(i) + "\n\n<p>Hello {{name}}, you are visitor {{n}}.</p>", 200,
                "<p>Hello " + who + ", you are visitor " + std::to_string(i) + ".</p>"};
    }
    case 8:
        // Lua's JSON encoder orders an object's keys as its table does: any body will do.
        if (options.javascript && (!options.lua || i % 20 < 10)) return script_request("/js/", true, i / 10, r);
        if (options.lua) return script_request("/lua/", false, i / 10, r);
        [[fallthrough]];
    case 6:
    case 7: {
        std::string doc = "{\"id\": " + std::to_string(i) + ", \"tags\": [";
        for (std::uint64_t k = 0; k < 4 + r % 16; ++k) doc += (k ? ", \"" : "\"") + words(r + k, 1) + "\"";
        doc += "], \"nested\": {\"ok\": true, \"ratio\": -1.5e3, \"none\": null}}";
        return {"/call/ValidateJson", doc, 200, {}};
    }
    default: return {"/call/Profile", "grace", 200, "<h1>grace</h1><p>Grace made the first compiler &amp; found the first bug (a moth).</p>"};
    }
}

struct run_state {
    explicit run_state(const load_options& o) : options(o) {}
    const load_options& options;
    std::uint64_t next = 0;
    std::uint64_t done = 0;
    std::size_t clients_left = 0;
    load_report report;
    std::vector<std::uint32_t> latency_us;
    clock::time_point start = clock::now();
    asio::steady_timer* progress_timer = nullptr;  // cancelled when the last client finishes

    void error(std::string what) {
        ++report.errors;
        if (report.error_samples.size() < 5) report.error_samples.push_back(std::move(what));
    }
};

awaitable<void> client(run_state& st) {
    auto ex = co_await asio::this_coro::executor;
    asio::ip::tcp::socket socket(ex);
    message_reader reader(message_reader::kind::response, {.max_header_bytes = 16 << 10, .max_body_bytes = 1 << 20});
    std::string pending;
    while (st.next < st.options.requests) {
        const std::uint64_t i = st.next++;
        const planned p = st.options.http_only ? planned{"/", "", 200, {}} : plan(i, st.options);
        if (!socket.is_open()) {
            pending.clear();
            auto [ec] = co_await socket.async_connect(st.options.target, as_tuple);
            if (!ec) socket.set_option(asio::ip::tcp::no_delay(true), ec);
            if (ec) {
                st.error("connect: " + ec.message());
                std::error_code ignored;
                socket.close(ignored);
                ++st.done;
                continue;
            }
        }
        const auto t0 = clock::now();
        const std::string request = format_request(st.options.http_only ? "GET" : "POST", p.target, p.body);
        auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(request), as_tuple);
        reader.reset();
        std::error_code ec = wec;
        while (!ec && reader.status() != message_reader::state::complete && reader.status() != message_reader::state::failed) {
            if (!pending.empty()) {
                pending.erase(0, reader.feed(pending));
                continue;
            }
            char chunk[8192];
            auto [rec, n] = co_await socket.async_read_some(asio::buffer(chunk), as_tuple);
            if (rec == asio::error::eof) {
                reader.feed_eof();
                if (reader.status() != message_reader::state::complete) ec = rec;
                break;
            }
            ec = rec;
            pending.append(chunk, rec ? 0 : n);
        }
        ++st.done;
        const auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count();
        st.latency_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, UINT32_MAX)));
        if (ec || reader.status() == message_reader::state::failed) {
            st.error(p.target + ": " + (ec ? ec.message() : reader.error_text()));
            std::error_code ignored;
            socket.close(ignored);
            continue;
        }
        const http_message& m = reader.message();
        ++st.report.statuses[m.status];
        if (m.status != p.status) {
            st.error(p.target + ": expected " + std::to_string(p.status) + ", got " + std::to_string(m.status) + ": " +
                     m.body.substr(0, 200));
        } else if (!p.expect_body.empty() && m.body != p.expect_body) {
            st.error(p.target + ": unexpected body: " + m.body.substr(0, 200));
        }
        if (!m.keep_alive) {
            std::error_code ignored;
            socket.close(ignored);
        }
    }
    if (--st.clients_left == 0 && st.progress_timer) st.progress_timer->cancel();
}

awaitable<void> progress(run_state& st) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    st.progress_timer = &timer;
    while (st.clients_left > 0) {
        timer.expires_after(st.options.progress_interval);
        auto [ec] = co_await timer.async_wait(as_tuple);
        if (ec) break;
        if (st.options.on_progress) st.options.on_progress({st.done, st.options.requests, st.report.errors, clock::now() - st.start});
    }
    st.progress_timer = nullptr;
}

double percentile_ms(std::vector<std::uint32_t>& v, double q) {
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k] / 1000.0;
}

}  // namespace

load_report run_load(const load_options& options) {
    asio::io_context io(1);
    run_state st(options);
    st.latency_us.reserve(options.requests);
    st.clients_left = std::max<std::size_t>(options.connections, 1);
    for (std::size_t c = 0; c < st.clients_left; ++c) asio::co_spawn(io, client(st), asio::detached);
    if (options.on_progress) asio::co_spawn(io, progress(st), asio::detached);
    io.run();
    st.report.requests = st.done;
    st.report.elapsed = clock::now() - st.start;
    st.report.p50_ms = percentile_ms(st.latency_us, 0.50);
    st.report.p99_ms = percentile_ms(st.latency_us, 0.99);
    st.report.max_ms = st.latency_us.empty() ? 0 : *std::max_element(st.latency_us.begin(), st.latency_us.end()) / 1000.0;
    return st.report;
}

}  // namespace web
