// SPDX-License-Identifier: Apache-2.0
// The guest's ways out in the middle of a call: host functions, printed text and log records. All of
// them use the output buffer, which the guest fills and the host reads (and answers in) while the
// vCPU is stopped.
#include <cstdio>
#include <cstring>
#include <exception>

#include "hl/abi/hl_abi.h"
#include "protocol/codec.hpp"
#include "sandbox/sandbox_core.hpp"
#include "util/escape_controls.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

std::string signature(std::span<const value_type> types) {
    std::string s = "(";
    for (std::size_t i = 0; i < types.size(); ++i) {
        if (i) s += ", ";
        s += type_name(types[i]);
    }
    return s + ")";
}

std::string signature(std::span<const argument> args) {
    std::vector<value_type> types;
    for (const auto& a : args) types.push_back(type_of(a));
    return signature(types);
}

// The defaults show guest bytes on the user's terminal: no control character or escape sequence
// gets through, and a log record stays one line. Handlers the application installs get the bytes.
void default_print(std::string_view text) {
    const std::string safe = util::escape_controls(text, util::line_breaks::keep);
    std::fwrite(safe.data(), 1, safe.size(), stdout);
    std::fflush(stdout);
}

void default_log(const log_record& r) {
    const std::string file = util::escape_controls(r.file, util::line_breaks::escape);
    const std::string message = util::escape_controls(r.message, util::line_breaks::escape);
    std::fprintf(stderr, "[guest %s] %s:%u: %s\n", to_string(r.level), file.c_str(), r.line, message.c_str());
}

}  // namespace

void sandbox_core::register_host_function(std::string name, host_function fn) {
    host_functions_.insert_or_assign(std::move(name), std::make_shared<const host_function>(std::move(fn)));
}

void sandbox_core::set_print_handler(print_handler handler) {
    print_ = handler ? std::make_shared<const print_handler>(std::move(handler)) : nullptr;
}

void sandbox_core::set_log_handler(log_handler handler) {
    log_ = handler ? std::make_shared<const log_handler>(std::move(handler)) : nullptr;
}

void sandbox_core::set_log_level(log_level level) {
    log_level_ = level;
    apply_log_level();
}

void sandbox_core::apply_log_level() {
    const auto field = memory_.read<hl_peb>(layout_.peb()).log_level;
    if (field == static_cast<std::uint32_t>(log_level_)) return;  // leave the page clean
    hl_peb peb = memory_.read<hl_peb>(layout_.peb());
    peb.log_level = static_cast<std::uint32_t>(log_level_);
    memory_.write(layout_.peb(), peb);
}

std::span<const std::byte> sandbox_core::output_message(const char* what) {
    const auto size = memory_.read<hl_buffer_header>(layout_.output()).size;
    const std::uint64_t capacity = layout_.output_size() - HL_BUFFER_HEADER_SIZE;
    if (size > capacity) {
        poison_and_throw(errc::protocol_error,
                         util::strfmt("the guest's %s claims %llu bytes; the output buffer holds %llu", what,
                                      static_cast<unsigned long long>(size), static_cast<unsigned long long>(capacity)));
    }
    return memory_.span(layout_.output() + HL_BUFFER_HEADER_SIZE, size);
}

void sandbox_core::reply(std::span<const std::byte> message) {
    const std::uint64_t capacity = layout_.output_size() - HL_BUFFER_HEADER_SIZE;
    if (message.size() > capacity) {
        const std::string text = util::strfmt(
            "the host function's result is %zu bytes; the output buffer holds %llu (raise "
            "sandbox_config::output_buffer_size)",
            message.size(), static_cast<unsigned long long>(capacity));
        return reply(protocol::encode_error(builder_, {protocol::guest_error_kind::result_too_large, 0, text}));
    }
    memory_.write(layout_.output(), hl_buffer_header{message.size()});
    memory_.write_bytes(layout_.output() + HL_BUFFER_HEADER_SIZE, message);
}

// An error text too long for the output buffer (a host function's exception message) is cut to
// fit: the guest must still learn what failed, not that a result was too large.
void sandbox_core::reply_error(protocol::guest_error_kind kind, std::string message) {
    const std::uint64_t capacity = layout_.output_size() - HL_BUFFER_HEADER_SIZE;
    auto encoded = protocol::encode_error(builder_, {kind, 0, message});
    if (encoded.size() > capacity) {
        // Room for "...", FlatBuffer padding, and the guest's passing it on in its own result.
        const std::uint64_t cut = encoded.size() - capacity + 64;
        message.resize(message.size() > cut ? message.size() - cut : 0);
        message += "...";
        encoded = protocol::encode_error(builder_, {kind, 0, message});
    }
    reply(encoded);
}

bool sandbox_core::serve_host_call(call_state& c) {
    protocol::call_view call;
    try {
        call = protocol::decode_call(output_message("host call"));
    } catch (const error& e) {
        if (poisoned()) throw;
        poison_and_throw(errc::protocol_error, std::string("bad host call from the guest: ") + e.what());
    }
    auto fail = [this](protocol::guest_error_kind kind, std::string message) {
        reply_error(kind, std::move(message));
        return false;
    };
    const auto it = host_functions_.find(std::string(call.function_name));
    const std::string name = util::name_for_message(call.function_name);
    if (it == host_functions_.end()) {
        return fail(protocol::guest_error_kind::function_not_found,
                    util::strfmt("the guest called host function '%s', which the host has not registered",
                                 name.c_str()));
    }
    const std::shared_ptr<const host_function> keep = it->second;  // survives re-registration from inside
    const host_function& fn = *keep;
    bool match = call.arguments.size() == fn.parameters.size();
    for (std::size_t i = 0; match && i < call.arguments.size(); ++i) match = type_of(call.arguments[i]) == fn.parameters[i];
    if (!match) {
        return fail(protocol::guest_error_kind::parameter_mismatch,
                    util::strfmt("host function '%s' takes %s; called with %s", name.c_str(),
                                 signature(fn.parameters).c_str(), signature(call.arguments).c_str()));
    }
    if (call.expected_return != fn.result) {
        return fail(protocol::guest_error_kind::return_type_mismatch,
                    util::strfmt("host function '%s' returns %s; the guest asked for %s", name.c_str(),
                                 type_name(fn.result), type_name(call.expected_return)));
    }

    if (c.how == call_state::mode::sliced && fn.start_async) {
        // The scheduler runs it: the request waits in `c`, its views into the output buffer intact.
        c.pending = {keep, std::string(call.function_name), std::move(call)};
        c.answered.store(call_state::answer_state::none);
        c.at.store(call_state::phase::host_call);
        return true;
    }

    return_value result;
    in_callback_ = true;
    try {
        result = fn.invoke(call.arguments);
    } catch (const std::exception& e) {
        in_callback_ = false;
        return fail(protocol::guest_error_kind::host_function_error,
                    util::strfmt("host function '%s' failed: %s", name.c_str(), e.what()));
    } catch (...) {
        in_callback_ = false;
        return fail(protocol::guest_error_kind::host_function_error,
                    util::strfmt("host function '%s' failed with a non-standard exception", name.c_str()));
    }
    in_callback_ = false;
    reply(protocol::encode_result(builder_, result));
    return false;
}

void sandbox_core::answer_host_call(call_state& c) {
    const call_state::host_request request = std::move(c.pending);
    host_function::outcome answer = std::move(c.answer);
    c.pending = {};
    c.answer = {};
    c.answered.store(call_state::answer_state::none);
    c.at.store(call_state::phase::ready);
    const std::string name = util::name_for_message(request.name);
    if (answer.failure) {
        return reply_error(protocol::guest_error_kind::host_function_error,
                           util::strfmt("host function '%s' failed: %s", name.c_str(), answer.failure->c_str()));
    }
    if (type_of(answer.value) != request.function->result) {
        return reply_error(protocol::guest_error_kind::host_function_error,
                           util::strfmt("host function '%s' answered with %s; it returns %s", name.c_str(),
                                        type_name(type_of(answer.value)), type_name(request.function->result)));
    }
    reply(protocol::encode_result(builder_, answer.value));
}

void sandbox_core::deliver_output(std::uint32_t kind) {
    // The guest is stopped mid-call: a handler that throws leaves it there, so the sandbox is poisoned.
    auto deliver = [this](auto&& handler, const char* which) {
        in_callback_ = true;
        try {
            handler();
        } catch (const std::exception& e) {
            in_callback_ = false;
            poison_and_throw(errc::handler_error, util::strfmt("the %s handler failed: %s", which, e.what()));
        } catch (...) {
            in_callback_ = false;
            poison_and_throw(errc::handler_error, util::strfmt("the %s handler threw", which));
        }
        in_callback_ = false;
    };
    if (kind == HL_OUTPUT_PRINT) {
        const auto text = output_message("output");
        const std::string_view view(reinterpret_cast<const char*>(text.data()), text.size());
        const auto handler = print_;  // survives set_print_handler() from inside
        deliver([&] { handler ? (*handler)(view) : default_print(view); }, "print");
        return;
    }
    if (kind == HL_OUTPUT_LOG) {
        log_record record;
        try {
            record = protocol::decode_log_record(output_message("log record"));
        } catch (const error& e) {
            if (poisoned()) throw;
            poison_and_throw(errc::protocol_error, std::string("bad log record from the guest: ") + e.what());
        }
        if (record.level < log_level_) return;  // the guest should have filtered it; do not trust that
        const auto handler = log_;
        deliver([&] { handler ? (*handler)(record) : default_log(record); }, "log");
        return;
    }
    poison_and_throw(errc::protocol_error, util::strfmt("the guest sent output of unknown kind %u", kind));
}

}  // namespace hl::detail
