// SPDX-License-Identifier: Apache-2.0
// Untrusted scripts per request with hl::script_pool: a JavaScript engine (Debian's Duktape) runs in
// each sandbox; the script is loaded once and snapshotted, and every call starts from that snapshot.
// The script reaches the application only through the host functions it is given.
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <cstdio>

#include "hl/runtime/script_pool.hpp"

// What a tenant might upload: functions that take and return JSON values.
constexpr const char* script = R"js(
var loadedAt = host.now(null);   // the top level runs once, before the snapshot
var calls = 0;

function quote(order) {
    calls += 1;                  // always 1: no call sees another's state
    var total = 0;
    for (var i = 0; i < order.items.length; i++) total += order.items[i].price * order.items[i].qty;
    var discount = host.discountFor(order.customer);
    return { total: total * (1 - discount), discount: discount, calls: calls, loadedAt: loadedAt };
}

function broken(order) { return order.missing.field; }
function forever() { for (;;) {} }
)js";

asio::awaitable<void> demo(asio::any_io_executor ex) {
    hl::script_options options;
    options.guest = HL_JSGUEST;
    options.name = "tenant.js";
    options.source = script;
    // Host functions take and return JSON text: one argument, one result.
    auto bind = [](hl::multi_use_sandbox& sb) {
        sb.register_host_function("now", [](std::string) { return std::string("\"2026-12-06\""); });
        sb.register_host_function("discountFor",
                                  [](std::string customer) { return std::string(customer == "\"ada\"" ? "0.1" : "0"); });
    };
    hl::pool_options pool;
    pool.max_size = 2;
    pool.call_limits.timeout = std::chrono::milliseconds(50);  // a runaway script is stopped
    auto scripts = co_await hl::script_pool::async_create(ex, options, bind, pool);

    const char* order = R"({"customer": "ada", "items": [{"price": 10, "qty": 3}, {"price": 5, "qty": 2}]})";
    for (int i = 0; i < 2; ++i) {
        std::printf("quote -> %s\n", (co_await scripts.async_call("quote", order)).c_str());
    }

    // A script's error comes back with its message and stack; the next call is clean.
    hl::diagnostics why;
    std::error_code ec;
    co_await scripts.async_call("broken", "{}", hl::with_diagnostics(why, asio::redirect_error(asio::use_awaitable, ec)));
    std::printf("broken -> %s:\n%s\n", ec.message().c_str(), why.message.c_str());

    co_await scripts.async_call("forever", "null", asio::redirect_error(asio::use_awaitable, ec));
    std::printf("forever -> %s\n", ec.message().c_str());
    std::printf("quote -> %s\n", (co_await scripts.async_call("quote", order)).c_str());

    co_await scripts.async_drain();
    std::printf("pool: %llu restores\n", static_cast<unsigned long long>(scripts.stats().restores));
    scripts.close();
}

int main() {
    asio::io_context io;
    int status = 0;
    asio::co_spawn(io, demo(io.get_executor()), [&](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            std::fprintf(stderr, "error: %s\n", x.what());
            status = x.code() == hl::errc::kvm_unavailable ? 77 : 1;
        }
    });
    io.run();
    return status;
}
