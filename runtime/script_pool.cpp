// SPDX-License-Identifier: Apache-2.0
// How a script_pool comes up: the engine starts in a template sandbox, which is snapshotted; a second
// sandbox from that snapshot gets the application's host functions and loads the script (so its top
// level may call them); the snapshot of that one is what every pooled sandbox starts from and is
// restored to.
#include "hl/runtime/script_pool.hpp"

#include <memory>

#include "hl/runtime/diagnostics.hpp"
#include "hl/runtime/runtime.hpp"

namespace hl {

sandbox_config script_options::default_config() {
    sandbox_config c;
    c.heap_size = 16u << 20;
    c.stack_size = 4u << 20;
    c.input_buffer_size = 64u << 10;
    c.output_buffer_size = 64u << 10;
    return c;
}

namespace {

// What the steps carry: each runs on a worker (or the pool's executor) and hands the rest on.
struct creation {
    asio::any_io_executor ex;
    asio::any_io_executor place;  // where the template sandboxes live
    script_options options;
    script_pool::bind_function bind;
    pool_options pool;
    std::function<void(std::error_code, std::string, sandbox_pool)> done;
    std::shared_ptr<async_sandbox> engine;  // the sandbox being prepared
    diagnostics diag;                       // the message of the step that failed

    void fail(std::error_code ec, std::string message) {
        bind = nullptr;
        auto finish = std::move(done);
        finish(ec, std::move(message), sandbox_pool());
    }
};

void load_script(std::shared_ptr<creation> c, std::shared_ptr<const snapshot> started);
void start_pool(std::shared_ptr<creation> c, std::shared_ptr<const snapshot> loaded);

void start_engine(std::shared_ptr<creation> c) {
    auto guest = c->options.guest;
    auto config = c->options.config;
    auto place = c->place;
    auto& diag = c->diag;
    async_sandbox::async_create(
        place, std::move(guest), std::move(config), {},
        with_diagnostics(diag, [c](std::error_code ec, async_sandbox engine) mutable {
            if (ec) return c->fail(ec, "the script engine guest could not be started: " + c->diag.message);
            c->engine = std::make_shared<async_sandbox>(std::move(engine));
            c->engine->async_snapshot(
                with_diagnostics(c->diag, [c](std::error_code ec, std::shared_ptr<const snapshot> s) {
                    if (ec) return c->fail(ec, "the script engine could not be snapshotted: " + c->diag.message);
                    load_script(c, std::move(s));
                }));
        }));
}

void load_script(std::shared_ptr<creation> c, std::shared_ptr<const snapshot> started) {
    auto place = c->place;
    auto& diag = c->diag;
    async_sandbox::async_create_from(
        place, std::move(started), c->bind,
        with_diagnostics(diag, [c](std::error_code ec, async_sandbox loader) mutable {
            if (ec) return c->fail(ec, "a sandbox of the script engine could not be created: " + c->diag.message);
            c->engine = std::make_shared<async_sandbox>(std::move(loader));
            c->engine->async_call<void>(
                "Load", c->options.name, c->options.source, with_diagnostics(c->diag, [c](std::error_code ec) {
                    if (ec) return c->fail(ec, "the script could not be loaded: " + c->diag.message);
                    c->engine->async_snapshot(
                        with_diagnostics(c->diag, [c](std::error_code ec, std::shared_ptr<const snapshot> loaded) {
                            if (ec) return c->fail(ec, "the loaded script could not be snapshotted: " + c->diag.message);
                            start_pool(c, std::move(loaded));
                        }));
                }));
        }));
}

void start_pool(std::shared_ptr<creation> c, std::shared_ptr<const snapshot> loaded) {
    c->engine.reset();  // the snapshot outlives it; its worker closes it
    auto ex = c->ex;
    auto bind = std::move(c->bind);
    auto& diag = c->diag;
    sandbox_pool::async_create(ex, std::move(loaded), std::move(bind), c->pool,
                               with_diagnostics(diag, [c](std::error_code ec, sandbox_pool pool) {
                                   auto finish = std::move(c->done);
                                   finish(ec, c->diag.message, std::move(pool));
                               }));
}

}  // namespace

void script_pool::create(executor_type ex, script_options options, bind_function bind, pool_options pool,
                         created_function done) {
    auto c = std::make_shared<creation>();
    c->place = pool.runtime != nullptr ? pool.runtime->get_executor() : ex;
    c->ex = std::move(ex);
    c->options = std::move(options);
    c->bind = std::move(bind);
    c->pool = pool;
    c->done = std::move(done);
    if (c->options.guest.empty()) {
        return c->fail(make_error_code(errc::usage_error),
                       "script_options::guest is empty: give the path of a script engine guest (jsguest.elf, "
                       "luaguest.elf)");
    }
    start_engine(std::move(c));
}

}  // namespace hl
