// SPDX-License-Identifier: Apache-2.0
// The guest's ways out in the middle of a call: host functions, printed text and log records. All of
// them use the output buffer, which the guest fills and the host reads (and answers in) while the
// vCPU is stopped.
#include "sandbox/host_services.hpp"

#include <cstdio>
#include <exception>
#include <vector>

#include "hl/abi/hl_abi.h"
#include "protocol/codec.hpp"
#include "sandbox/poisoning.hpp"
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

void host_services::register_function(std::string name, host_function fn) {
    functions_.insert_or_assign(std::move(name), std::make_shared<const host_function>(std::move(fn)));
}

void host_services::set_print_handler(print_handler handler) {
    print_ = handler ? std::make_shared<const print_handler>(std::move(handler)) : nullptr;
}

void host_services::set_log_handler(log_handler handler) {
    log_ = handler ? std::make_shared<const log_handler>(std::move(handler)) : nullptr;
}

bool host_services::serve(call_buffers& buffers, call_state& c) {
    const auto message = buffers.message("host call");
    protocol::call_view call;
    try {
        call = protocol::decode_call(message);
    } catch (const error& e) {
        throw poisoning(errc::protocol_error, std::string("bad host call from the guest: ") + e.what());
    }
    auto fail = [&buffers](protocol::guest_error_kind kind, std::string text) {
        buffers.reply_error(kind, std::move(text));
        return false;
    };
    const auto it = functions_.find(std::string(call.function_name));
    const std::string name = util::name_for_message(call.function_name);
    if (it == functions_.end()) {
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
    try {
        const callback_scope inside(*this);
        result = fn.invoke(call.arguments);
    } catch (const std::exception& e) {
        return fail(protocol::guest_error_kind::host_function_error,
                    util::strfmt("host function '%s' failed: %s", name.c_str(), e.what()));
    } catch (...) {
        return fail(protocol::guest_error_kind::host_function_error,
                    util::strfmt("host function '%s' failed with a non-standard exception", name.c_str()));
    }
    buffers.reply(result);
    return false;
}

void host_services::answer(call_buffers& buffers, call_state& c) {
    const call_state::host_request request = std::move(c.pending);
    host_function::outcome answer = std::move(c.answer);
    c.pending = {};
    c.answer = {};
    c.answered.store(call_state::answer_state::none);
    c.at.store(call_state::phase::ready);
    const std::string name = util::name_for_message(request.name);
    if (answer.failure) {
        return buffers.reply_error(protocol::guest_error_kind::host_function_error,
                                   util::strfmt("host function '%s' failed: %s", name.c_str(), answer.failure->c_str()));
    }
    if (type_of(answer.value) != request.function->result) {
        return buffers.reply_error(protocol::guest_error_kind::host_function_error,
                                   util::strfmt("host function '%s' answered with %s; it returns %s", name.c_str(),
                                                type_name(type_of(answer.value)), type_name(request.function->result)));
    }
    buffers.reply(answer.value);
}

// The guest is stopped mid-call: a handler that throws leaves it there, so the sandbox is poisoned.
template <class Handler>
void host_services::run_handler(const char* which, Handler&& handler) {
    try {
        const callback_scope inside(*this);
        handler();
    } catch (const std::exception& e) {
        throw poisoning(errc::handler_error, util::strfmt("the %s handler failed: %s", which, e.what()));
    } catch (...) {
        throw poisoning(errc::handler_error, util::strfmt("the %s handler threw", which));
    }
}

void host_services::print(std::string_view text) {
    const auto handler = print_;
    run_handler("print", [&] { handler ? (*handler)(text) : default_print(text); });
}

void host_services::notice(log_level level, std::string_view message) {
    if (level < level_) return;
    const log_record record{level, message, "system call", 0};
    const auto handler = log_;
    run_handler("log", [&] { handler ? (*handler)(record) : default_log(record); });
}

void host_services::deliver_output(const call_buffers& buffers, std::uint32_t kind) {
    if (kind == HL_OUTPUT_PRINT) {
        const auto text = buffers.message("output");
        const std::string_view view(reinterpret_cast<const char*>(text.data()), text.size());
        const auto handler = print_;  // survives set_print_handler() from inside
        run_handler("print", [&] { handler ? (*handler)(view) : default_print(view); });
        return;
    }
    if (kind == HL_OUTPUT_LOG) {
        const auto message = buffers.message("log record");
        log_record record;
        try {
            record = protocol::decode_log_record(message);
        } catch (const error& e) {
            throw poisoning(errc::protocol_error, std::string("bad log record from the guest: ") + e.what());
        }
        if (record.level < level_) return;  // the guest should have filtered it; do not trust that
        const auto handler = log_;
        run_handler("log", [&] { handler ? (*handler)(record) : default_log(record); });
        return;
    }
    throw poisoning(errc::protocol_error, util::strfmt("the guest sent output of unknown kind %u", kind));
}

}  // namespace hl::detail
