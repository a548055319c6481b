// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "hl/host_function.hpp"
#include "hl/log.hpp"
#include "sandbox/call_buffers.hpp"
#include "sandbox/call_state.hpp"

namespace hl::detail {

/// What the host offers its guest while a call runs: the host functions it registered, and the
/// handlers for the guest's printed text and log records. Serves the guest's requests from the call
/// buffers and answers there. Used by the thread driving the sandbox; registrations and handler
/// changes may come from inside a callback.
///
/// Every request-serving member throws detail::poisoning when what the guest sent (or what a
/// handler did) must poison the sandbox; the guest's own mistakes in a host call (an unknown name,
/// wrong types) are answered with a guest error instead.
class host_services {
public:
    void register_function(std::string name, host_function fn);
    /// An empty handler puts the default back (escaped text on stdout, one line per record on stderr).
    void set_print_handler(print_handler handler);
    void set_log_handler(log_handler handler);

    /// The host's log level: records below it are dropped (the guest should have filtered them).
    log_level level() const noexcept { return level_; }
    void set_level(log_level level) noexcept { level_ = level; }

    /// True while one of the host functions or handlers runs on this thread: the sandbox must not
    /// be driven then.
    bool in_callback() const noexcept { return in_callback_; }

    /// Serves the host call in the output buffer and writes the answer there. Returns true, with
    /// nothing written, when the function is to run asynchronously (a sliced call and a function
    /// with `start_async`): `c` then holds the request until answer() writes the answer it got.
    bool serve(call_buffers& buffers, call_state& c);

    /// Writes the answer `c` holds for its pending host call, and puts `c` back to ready.
    void answer(call_buffers& buffers, call_state& c);

    /// Hands text the guest wrote with a system call (write to fd 1 or 2) to the print handler.
    void print(std::string_view text);
    /// Hands a record about the guest (file "system call") to the log handler, when at or above the level.
    void notice(log_level level, std::string_view message);

    /// Delivers the guest's text (HL_OUTPUT_PRINT) or log record (HL_OUTPUT_LOG) in the output buffer.
    void deliver_output(const call_buffers& buffers, std::uint32_t kind);

private:
    /// Marks "inside a callback" for as long as it lives, on every way out.
    class callback_scope {
    public:
        explicit callback_scope(host_services& services) noexcept
            : services_(services), outer_(services.in_callback_) {
            services_.in_callback_ = true;
        }
        ~callback_scope() { services_.in_callback_ = outer_; }
        callback_scope(const callback_scope&) = delete;
        callback_scope& operator=(const callback_scope&) = delete;

    private:
        host_services& services_;
        bool outer_;
    };

    template <class Handler>
    void run_handler(const char* which, Handler&& handler);

    // Held by shared_ptr so that a callback which replaces itself does not destroy itself mid-call.
    std::unordered_map<std::string, std::shared_ptr<const host_function>> functions_;
    std::shared_ptr<const print_handler> print_;
    std::shared_ptr<const log_handler> log_;
    log_level level_ = log_level::info;
    bool in_callback_ = false;
};

}  // namespace hl::detail
