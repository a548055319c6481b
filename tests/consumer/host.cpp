// SPDX-License-Identifier: Apache-2.0
// The consumer's host: one synchronous call and one async call of each guest (the arguments, or the
// guests its build made). Exits 0 on the expected answers, 77 without a usable /dev/kvm, 1 otherwise.
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <hl/hl.hpp>
#include <hl/runtime/async_sandbox.hpp>
#include <hl/runtime/script_pool.hpp>

#ifndef CONSUMER_HOST_OPTION
#error "the consuming project's add_compile_options() did not reach its host code"
#endif

namespace {

// Enough heap for a guest on a libc (musl's malloc), and more than a freestanding one needs.
hl::sandbox_config config() {
    hl::sandbox_config c;
    c.heap_size = 4u << 20;
    return c;
}

asio::awaitable<int> async_add(asio::any_io_executor ex, std::string guest) {
    auto sb = co_await hl::async_sandbox::async_create(ex, guest, config(), [](hl::uninitialized_sandbox&) {},
                                                       asio::use_awaitable);
    co_return co_await sb.async_call<int>("Add", 40, 2);
}

int run(const std::string& guest) {
    auto sb = hl::uninitialized_sandbox::from_file(guest, config()).evolve();
    const std::string greeting = sb.call<std::string>("Greet", std::string("consumer"));
    std::printf("%s\nsync:  Greet -> \"%s\"\n", guest.c_str(), greeting.c_str());

    asio::io_context io;
    int sum = 0;
    std::exception_ptr failure;
    asio::co_spawn(io, async_add(io.get_executor(), guest), [&](std::exception_ptr e, int r) {
        failure = e;
        sum = r;
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    std::printf("async: Add(40, 2) -> %d\n", sum);
    return greeting == "hello, consumer" && sum == 42 ? 0 : 1;
}

#ifdef CONSUMER_JSGUEST
// A script pool on the JavaScript guest the package installed (or the checkout built).
asio::awaitable<std::string> script_call(asio::any_io_executor ex) {
    hl::script_options o;
    o.guest = CONSUMER_JSGUEST;
    o.source = "function add(p) { return p.a + p.b; }";
    auto scripts = co_await hl::script_pool::async_create(ex, std::move(o), {}, {}, asio::use_awaitable);
    auto sum = co_await scripts.async_call("add", R"({"a": 40, "b": 2})", asio::use_awaitable);
    scripts.close();
    co_return sum;
}

int run_script() {
    asio::io_context io;
    std::string sum;
    std::exception_ptr failure;
    asio::co_spawn(io, script_call(io.get_executor()), [&](std::exception_ptr e, std::string r) {
        failure = e;
        sum = std::move(r);
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    std::printf("%s\nscript: add({a: 40, b: 2}) -> %s\n", CONSUMER_JSGUEST, sum.c_str());
    return sum == "42" ? 0 : 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> guests(argv + 1, argv + argc);
    if (guests.empty()) {
        guests.emplace_back(CONSUMER_GUEST);
#ifdef CONSUMER_C_GUEST
        guests.emplace_back(CONSUMER_C_GUEST);
#endif
    }
    try {
        for (const auto& guest : guests) {
            if (run(guest) != 0) return 1;
        }
#ifdef CONSUMER_JSGUEST
        if (argc == 1 && run_script() != 0) return 1;
#endif
        return 0;
    } catch (const std::system_error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return e.code() == hl::errc::kvm_unavailable ? 77 : 1;
    }
}
