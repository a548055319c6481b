// SPDX-License-Identifier: Apache-2.0
// 06_server: an Asio HTTP server whose requests run guest functions in pooled sandboxes.
//
//   06_server                 the demo: start the server on loopback, drive it with a bounded load
//                             generator, print progress and a summary, stop
//   06_server --serve         serve on --port until SIGINT or SIGTERM, e.g.
//                             curl --data-binary abc localhost:8080/call/Sha256
//   06_server --serve --js handlers.js
//                             serve handlers.js's functions too, e.g.
//                             curl --data '{"user": "ada"}' localhost:8080/js/profile
//
// The demo serves the handler scripts in handlers/ (--js, --lua replace them) and its load mix
// includes their requests.
#include <CLI/CLI.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "load.hpp"
#include "server.hpp"

namespace {

#ifdef HL_LUAGUEST
constexpr const char* hl_lua_guest = HL_LUAGUEST;
#else
constexpr const char* hl_lua_guest = nullptr;
#endif

struct settings {
    bool serve = false;
    std::uint16_t port = 8080;
    std::uint64_t requests = 20000;
    std::size_t connections = 16;
    // As many sandboxes as demo connections: a connection has one request in flight at a time, so
    // no request waits for a sandbox (they share one snapshot's pages until they write them).
    std::size_t pool_size = 16;
    std::size_t workers = 0;
    std::uint64_t deadline_ms = 100;
    // Each guest call's CPU-time budget (pool_options::call_limits): a runaway is stopped once it has
    // used this much of its worker, well before the request's deadline. 0: none.
    std::uint64_t cpu_budget_ms = 20;
    std::uint64_t runaway_every = web::load_options{}.runaway_every;
    // A runaway guest gets a quarter of a busy worker, not most of it (runtime_options::sliced_share).
    double sliced_share = 0.25;
    std::string js;   // handler scripts: empty for none (the demo: its own, unless --no-scripts)
    std::string lua;
    bool no_scripts = false;
};

// The handlers in `path` for the engine `guest`; throws if the file cannot be read.
web::script_handlers read_handlers(const std::string& path, const char* guest) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) throw std::runtime_error("cannot read the handler script " + path);
    return {guest, std::filesystem::path(path).filename().string(), text.str()};
}

double rate(const web::load_report& r) {
    return static_cast<double>(r.requests) / std::chrono::duration<double>(r.elapsed).count();
}

// The guest requests are read against `floor`: plain HTTP requests (GET /, no guest) sent first, in
// the same run, since absolute figures drift on a shared machine.
void print_summary(const web::load_report& r, const web::load_report& floor, const web::http_server& server,
                   std::size_t pool_size) {
    const auto s = server.stats();
    const auto p = server.pool_stats();
    std::printf("== summary\n");
    std::printf("requests   %llu in %.2f s: %.0f requests/s, %.2f of the HTTP-only rate (%.0f requests/s)\n",
                static_cast<unsigned long long>(r.requests), std::chrono::duration<double>(r.elapsed).count(), rate(r),
                rate(r) / rate(floor), rate(floor));
    std::printf("errors     %llu (answers other than the expected one, and transport failures)\n",
                static_cast<unsigned long long>(r.errors));
    for (const auto& e : r.error_samples) std::printf("           e.g. %s\n", e.c_str());
    std::printf("statuses  ");
    for (auto [status, n] : r.statuses) std::printf(" %d: %llu", status, static_cast<unsigned long long>(n));
    std::printf("  (404, 422 and 504 are expected: unknown functions, invalid JSON, runaway guests)\n");
    std::printf("latency    p50 %.2f ms, p99 %.2f ms, max %.2f ms (HTTP only: p50 %.2f ms, p99 %.2f ms)\n", r.p50_ms, r.p99_ms,
                r.max_ms, floor.p50_ms, floor.p99_ms);
    const auto m = server.guest_metrics();
    std::printf("guests     %llu stopped by their CPU budget, %llu by the deadline, %llu by a client leaving\n",
                static_cast<unsigned long long>(m.calls_with(hl::errc::cpu_budget_exceeded)),
                static_cast<unsigned long long>(s.deadline_cancels), static_cast<unsigned long long>(s.disconnect_cancels));
    std::printf("pool       %zu sandboxes, %llu restores, %llu replaced\n", pool_size, static_cast<unsigned long long>(p.restores),
                static_cast<unsigned long long>(p.replacements));
}

// Runs the load generator on a thread of its own, like a separate client process, while this
// coroutine's io_context keeps serving.
asio::awaitable<web::load_report> generate(web::load_options options) {
    auto ex = co_await asio::this_coro::executor;
    web::load_report report;
    asio::steady_timer finished(ex, asio::steady_timer::time_point::max());  // cancelled by the generator
    std::thread generator([&] {
        pthread_setname_np(pthread_self(), "load");
        report = web::run_load(options);
        asio::post(ex, [&] { finished.cancel(); });
    });
    co_await finished.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    generator.join();
    co_return report;
}

// The server accepts on this coroutine's executor; its connections and sandboxes run on `rt`.
asio::awaitable<int> run(settings cfg, hl::runtime& rt) {
    auto ex = co_await asio::this_coro::executor;
    web::server_options options;
    options.endpoint.port(cfg.serve ? cfg.port : 0);
    options.deadline = std::chrono::milliseconds(cfg.deadline_ms);
    // The demo's own handlers, whose answers its load generator knows.
    const bool demo_js = !cfg.serve && !cfg.no_scripts && cfg.js.empty();
    const bool demo_lua = !cfg.serve && !cfg.no_scripts && cfg.lua.empty() && hl_lua_guest != nullptr;
    if (demo_js) cfg.js = HL_DEMO_HANDLERS_JS;
#ifdef HL_DEMO_HANDLERS_LUA
    if (demo_lua) cfg.lua = HL_DEMO_HANDLERS_LUA;
#endif
    if (!cfg.js.empty()) options.javascript = read_handlers(cfg.js, HL_JSGUEST);
    if (!cfg.lua.empty()) {
        if (hl_lua_guest == nullptr) throw std::runtime_error("this build has no Lua guest (liblua5.4-dev, lua-cjson-dev)");
        options.lua = read_handlers(cfg.lua, hl_lua_guest);
    }
    const hl::call_limits limits{.cpu_time = std::chrono::milliseconds(cfg.cpu_budget_ms)};
    auto server = co_await web::http_server::create(HL_WEBGUEST, options,
                                                    {.min_size = cfg.pool_size,
                                                     .max_size = cfg.pool_size,
                                                     .max_waiters = 256,
                                                     .runtime = &rt,
                                                     .call_limits = limits});
    server.start();
    std::printf("== listening on http://127.0.0.1:%u (%zu workers, pool of %zu sandboxes, deadline %llu ms, CPU budget %llu "
                "ms)\n",
                server.port(), server.workers(), cfg.pool_size, static_cast<unsigned long long>(cfg.deadline_ms),
                static_cast<unsigned long long>(cfg.cpu_budget_ms));
    if (!cfg.js.empty()) std::printf("== /js/<function>: %s, loaded once and snapshotted\n", cfg.js.c_str());
    if (!cfg.lua.empty()) std::printf("== /lua/<function>: %s, loaded once and snapshotted\n", cfg.lua.c_str());
    std::fflush(stdout);
    if (cfg.serve) {
        asio::signal_set signals(ex, SIGINT, SIGTERM);
        co_await signals.async_wait(asio::use_awaitable);
        std::printf("== stopping\n");
    } else {
        web::load_options load;
        load.target = {asio::ip::address_v4::loopback(), server.port()};
        load.requests = cfg.requests;
        load.connections = cfg.connections;
        load.runaway_every = cfg.runaway_every;
        load.javascript = demo_js;
        load.lua = demo_lua;
        load.on_progress = [](const web::load_progress& p) {
            std::printf("  [%5.1f s] %llu/%llu requests, %llu errors\n", std::chrono::duration<double>(p.elapsed).count(),
                        static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total),
                        static_cast<unsigned long long>(p.errors));
            std::fflush(stdout);
        };
        web::load_options http_only = load;
        http_only.http_only = true;
        http_only.requests = std::clamp<std::uint64_t>(cfg.requests / 2, 500, 10000);
        http_only.on_progress = nullptr;
        std::printf("== first, %llu requests to GET / (HTTP only, no guest, on the same workers), the floor to compare with\n",
                    static_cast<unsigned long long>(http_only.requests));
        const web::load_report floor = co_await generate(http_only);
        std::printf("== sending %llu requests over %zu connections\n", static_cast<unsigned long long>(cfg.requests), cfg.connections);
        const web::load_report report = co_await generate(load);
        co_await server.shutdown();  // first, so that the last tasks' restores are counted
        print_summary(report, floor, server, cfg.pool_size);
        co_return report.errors + floor.errors == 0 ? 0 : 1;
    }
    co_await server.shutdown();
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    settings cfg;
    CLI::App app{"An HTTP server running guest functions in pooled hyperlight sandboxes; by default, a load demo."};
    app.add_flag("--serve", cfg.serve, "serve until SIGINT/SIGTERM instead of running the demo");
    app.add_option("--port", cfg.port, "port to listen on with --serve")->capture_default_str();
    app.add_option("--requests", cfg.requests, "demo: requests to send")->capture_default_str()->check(CLI::PositiveNumber);
    app.add_option("--connections", cfg.connections, "demo: client connections")->capture_default_str()->check(CLI::Range(1, 1000));
    app.add_option("--pool-size", cfg.pool_size, "sandboxes in the pool")->capture_default_str()->check(CLI::Range(1, 64));
    app.add_option("--workers", cfg.workers, "worker threads for connections and sandboxes; 0: one per core")
        ->capture_default_str()
        ->check(CLI::Range(0, 64));
    app.add_option("--deadline-ms", cfg.deadline_ms, "per-call deadline")->capture_default_str()->check(CLI::Range(1, 600000));
    app.add_option("--cpu-budget-ms", cfg.cpu_budget_ms, "per-call CPU-time budget; 0: none")
        ->capture_default_str()
        ->check(CLI::Range(0, 600000));
    app.add_option("--runaway-every", cfg.runaway_every,
                   "demo: every Nth request calls a guest that spins until the deadline; 0: none")
        ->capture_default_str();
    app.add_option("--sliced-share", cfg.sliced_share,
                   "the share of a busy worker a guest call past its slice gets (runtime_options::sliced_share)")
        ->capture_default_str()
        ->check(CLI::Range(0.001, 1.0));
    app.add_option("--js", cfg.js, "JavaScript handlers to serve at POST /js/<function> (the demo: handlers/handlers.js)");
    app.add_option("--lua", cfg.lua, "Lua handlers to serve at POST /lua/<function> (the demo: handlers/handlers.lua)");
    app.add_flag("--no-scripts", cfg.no_scripts, "demo: serve no handler scripts");
    CLI11_PARSE(app, argc, argv);

    // The runtime outlives the io_context: the server's last references may go on its workers.
    hl::runtime rt({.workers = cfg.workers, .sliced_share = cfg.sliced_share});
    asio::io_context io(1);
    int status = 0;
    asio::co_spawn(io, run(cfg, rt), [&](std::exception_ptr e, int s) {
        status = s;
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::system_error& x) {
            std::fprintf(stderr, "error: %s\n", x.what());
            status = x.code() == hl::errc::kvm_unavailable ? 77 : 1;
        } catch (const std::exception& x) {
            std::fprintf(stderr, "error: %s\n", x.what());
            status = 1;
        }
    });
    io.run();
    return status;
}
