// SPDX-License-Identifier: Apache-2.0
// For the tests of 06_server: the server on a thread of its own, and a blocking client.
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

#include "guest_paths.hpp"
#include "server.hpp"

namespace hl::test {

/// A fixture that runs 06_server on its own io_context thread, on an ephemeral loopback port.
class server_test : public ::testing::Test {
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
        for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return done();
    }

    asio::io_context io_{1};
    asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
    std::thread thread_;
    std::optional<hl::runtime> runtime_;  // for a test that gives the server its own; before server_, after io_
    std::optional<web::http_server> server_;
    asio::ip::tcp::endpoint endpoint_;
};

/// A blocking test client on its own io_context.
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

}  // namespace hl::test
