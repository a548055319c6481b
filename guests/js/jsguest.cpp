// SPDX-License-Identifier: Apache-2.0
// The JavaScript guest: Debian's Duktape (duktape-dev, compiled from /usr/share/duktape/duktape.c by
// the build) in an ordinary static-PIE program. One engine per sandbox, created in hl_guest_init(); a
// script is loaded once, the host snapshots the sandbox, and every request runs from that snapshot.
//
// Guest functions (the contract the Lua guest shares; docs/DESIGN.md, "Script guests"):
//   Load(name, source)    runs the script's top level; `name` names it in errors and stack traces
//   Call(function, json)  calls a global function with the decoded JSON value, returns its result as JSON
//   Eval(expression)      the value of an expression, as JSON
// Errors carry a code (script_error below) and the engine's message with the stack. The script reaches
// the host only through `host.<name>(value)`: the host function <name>, called with the value's JSON,
// returning JSON.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "duktape.h"
#include "hl/guest.hpp"

namespace {

/// The codes of a script's failures, as the host sees them in guest_error's message (the Lua guest
/// uses the same).
enum script_error : std::int32_t {
    compile_error = 1,  ///< a syntax error in Load or Eval
    thrown = 2,         ///< an uncaught error (its message and stack)
    no_function = 3,    ///< Call named something that is not a function (errc::unknown_function)
    bad_argument = 4,   ///< Call's argument is not valid JSON
    bad_result = 5,     ///< the result cannot be encoded as JSON
};

duk_context* engine = nullptr;
// Set by the allocator when malloc fails, so that a failure of the call can be told apart as "out of
// memory" whatever error Duktape made of it (a RangeError, or an error while building the error).
bool allocation_failed = false;

void* js_alloc(void*, duk_size_t size) {
    void* p = std::malloc(size);
    if (p == nullptr && size != 0) allocation_failed = true;
    return p;
}
void* js_realloc(void*, void* ptr, duk_size_t size) {
    void* p = std::realloc(ptr, size);
    if (p == nullptr && size != 0) allocation_failed = true;
    return p;
}
void js_free(void*, void* ptr) { std::free(ptr); }

// Duktape calls this for an error outside any protected call or an internal failure it cannot
// recover from; the guest cannot go on, and the host sees guest_aborted (and restores).
[[noreturn]] void js_fatal(void*, const char* message) {
    std::fprintf(stderr, "duktape: fatal: %s\n", message ? message : "(no message)");
    std::abort();
}

// Duktape keeps strings in CESU-8: a character outside the BMP that came in as \uXXXX escapes is a
// pair of three-byte surrogates, which is not UTF-8. Text leaving the engine is UTF-8: a pair
// becomes its four-byte character, a lone surrogate U+FFFD. Anything else passes unchanged.
std::string to_utf8(std::string_view in) {
    const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
    // The surrogate whose three bytes start at `i` (0xD800..0xDFFF), or 0.
    const auto surrogate = [&](std::size_t i) -> std::uint32_t {
        if (i + 2 >= in.size() || byte(i) != 0xED || byte(i + 1) < 0xA0 || byte(i + 1) > 0xBF) return 0;
        if ((byte(i + 2) & 0xC0) != 0x80) return 0;
        return 0xD000u | ((byte(i + 1) & 0x3Fu) << 6) | (byte(i + 2) & 0x3Fu);
    };
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size();) {
        const std::uint32_t high = surrogate(i);
        if (high == 0) {
            out += in[i++];
            continue;
        }
        const std::uint32_t low = high < 0xDC00 ? surrogate(i + 3) : 0;
        if (low >= 0xDC00) {
            const std::uint32_t cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
            i += 6;
        } else {
            out += "\xEF\xBF\xBD";
            i += 3;
        }
    }
    return out;
}

std::string to_std(duk_context* ctx, duk_idx_t idx) {
    duk_size_t len = 0;
    const char* s = duk_get_lstring(ctx, idx, &len);
    return s ? to_utf8(std::string_view(s, len)) : std::string();
}

// [value] -> [json or undefined]; never throws (a cycle or a throwing toJSON leaves undefined, and
// `detail` says why).
duk_ret_t encode_unsafe(duk_context* ctx, void*) {
    duk_json_encode(ctx, -1);
    return 1;
}

bool encode(duk_context* ctx, std::string& out, std::string& detail) {
    if (duk_is_undefined(ctx, -1)) {
        duk_pop(ctx);
        out = "null";
        return true;
    }
    if (duk_safe_call(ctx, encode_unsafe, nullptr, 1, 1) != DUK_EXEC_SUCCESS) {
        detail = to_utf8(duk_safe_to_string(ctx, -1));
        duk_pop(ctx);
        return false;
    }
    if (!duk_is_string(ctx, -1)) {  // a function or another value JSON has no text for
        duk_pop(ctx);
        detail = "JSON has no encoding for a value of that type (a function?)";
        return false;
    }
    out = to_std(ctx, -1);
    duk_pop(ctx);
    return true;
}

// [thrown] -> [its stack]: an Error's own or inherited `stack` is an accessor the script may have
// replaced, so it is read under protection.
duk_ret_t stack_unsafe(duk_context* ctx, void*) {
    duk_get_prop_string(ctx, -1, "stack");
    if (!duk_is_string(ctx, -1)) {
        duk_pop(ctx);
        duk_to_string(ctx, -1);
    }
    return 1;
}

// What a thrown value reads as: an Error's stack (its message first), else the value itself.
std::string describe_thrown(duk_context* ctx) {
    if (duk_is_error(ctx, -1)) {
        duk_dup(ctx, -1);
        std::string text = duk_safe_call(ctx, stack_unsafe, nullptr, 1, 1) == DUK_EXEC_SUCCESS
                               ? to_std(ctx, -1)
                               : std::string("an Error whose stack and message cannot be read");
        duk_pop(ctx);
        return text;
    }
    duk_dup(ctx, -1);
    std::string json, ignored;
    const bool encoded = encode(ctx, json, ignored);
    return "uncaught non-error value: " + (encoded ? json : to_utf8(duk_safe_to_string(ctx, -1)));
}

// The error for the thrown value on top of the stack (popped): out of memory if the allocator failed
// during the call, else `code` with the value's description.
hl::guest::error failure(duk_context* ctx, script_error code, std::string_view context) {
    std::string text = describe_thrown(ctx);
    duk_pop(ctx);
    if (allocation_failed) {
        allocation_failed = false;
        return {0, std::string(context) + ": the script ran out of memory (" + text + ")", HL_ERROR_OUT_OF_MEMORY};
    }
    return {code, std::string(context) + ": " + text};
}

// Duktape throws with longjmp, which must not cross a frame with C++ objects to destroy: host_call
// keeps its text here and throws only from frames that hold none.
std::string host_name, host_json, host_detail, host_reply;

enum class host_outcome { ok, too_many_arguments, unencodable, failed };

host_outcome call_the_host(duk_context* ctx) {
    host_name = to_std(ctx, 0);
    if (duk_get_top(ctx) > 2) return host_outcome::too_many_arguments;
    duk_set_top(ctx, 2);
    duk_dup(ctx, 1);
    if (!encode(ctx, host_json, host_detail)) return host_outcome::unencodable;
    auto reply = hl::guest::call_host<std::string>(host_name.c_str(), host_json);
    if (!reply) {
        host_detail = reply.error().message;
        return host_outcome::failed;
    }
    host_reply = std::move(*reply);
    return host_outcome::ok;
}

// host.<name>(value), reached through the Proxy the bootstrap builds: [name, value] -> [result].
duk_ret_t host_call(duk_context* ctx) {
    switch (call_the_host(ctx)) {
    case host_outcome::too_many_arguments:
        return duk_type_error(ctx, "host.%s takes one argument (a JSON value)", host_name.c_str());
    case host_outcome::unencodable:
        return duk_type_error(ctx, "the argument of host.%s cannot be encoded as JSON: %s", host_name.c_str(),
                              host_detail.c_str());
    case host_outcome::failed:
        return duk_error(ctx, DUK_ERR_ERROR, "host function '%s' failed: %s", host_name.c_str(), host_detail.c_str());
    case host_outcome::ok:
        break;
    }
    duk_push_lstring(ctx, host_reply.data(), host_reply.size());
    duk_json_decode(ctx, -1);  // the host's reply is trusted no more than any text: a SyntaxError
    return 1;
}

// The `host` object: any property is a function that calls the host function of that name. It is a
// Proxy over nothing, so reading a name the host lacks gives a function whose call fails with the
// host's "no such host function"; assignments and definitions are refused.
constexpr std::string_view bootstrap = R"js(
(function (call) {
    var handler = {
        get: function (target, name) {
            if (typeof name !== 'string') return undefined;
            return function () {
                if (arguments.length > 1) throw new TypeError('host.' + name + ' takes one argument (a JSON value)');
                return call(name, arguments[0]);
            };
        },
        set: function () { throw new TypeError('host is read-only'); },
        defineProperty: function () { throw new TypeError('host is read-only'); },
        deleteProperty: function () { throw new TypeError('host is read-only'); }
    };
    return new Proxy({}, handler);
})
)js";

bool start_engine() {
    engine = duk_create_heap(js_alloc, js_realloc, js_free, nullptr, js_fatal);
    if (engine == nullptr) return false;
    duk_push_global_object(engine);
    duk_push_string(engine, "host");
    duk_push_string(engine, "bootstrap");
    if (duk_pcompile_lstring_filename(engine, DUK_COMPILE_EVAL, bootstrap.data(), bootstrap.size()) != 0) return false;
    if (duk_pcall(engine, 0) != DUK_EXEC_SUCCESS) return false;
    duk_push_c_function(engine, host_call, DUK_VARARGS);
    if (duk_pcall(engine, 1) != DUK_EXEC_SUCCESS) return false;
    // Not writable, not configurable: a script cannot swap `host` for something of its own.
    duk_def_prop(engine, -3, DUK_DEFPROP_HAVE_VALUE | DUK_DEFPROP_CLEAR_WRITABLE | DUK_DEFPROP_CLEAR_CONFIGURABLE |
                                 DUK_DEFPROP_SET_ENUMERABLE);
    duk_pop(engine);
    return true;
}

hl::guest::error no_engine() { return {0, "the JavaScript engine could not be created", HL_ERROR_OUT_OF_MEMORY}; }

hl::guest::result<void> load(std::string_view name, std::string_view source) {
    if (engine == nullptr) return no_engine();
    allocation_failed = false;
    const std::string label = "Load " + std::string(name);
    duk_push_lstring(engine, name.data(), name.size());  // the file name errors and stacks give
    if (duk_pcompile_lstring_filename(engine, 0, source.data(), source.size()) != 0) {
        return failure(engine, compile_error, label);
    }
    if (duk_pcall(engine, 0) != DUK_EXEC_SUCCESS) return failure(engine, thrown, label);
    duk_pop(engine);
    return {};
}

duk_ret_t decode_unsafe(duk_context* ctx, void*) {
    duk_json_decode(ctx, -1);
    return 1;
}

hl::guest::result<std::string> call(std::string_view function, std::string_view json) {
    if (engine == nullptr) return no_engine();
    allocation_failed = false;
    const std::string fn(function);
    duk_context* ctx = engine;
    duk_push_global_object(ctx);
    duk_get_prop_lstring(ctx, -1, function.data(), function.size());
    duk_remove(ctx, -2);
    if (!duk_is_function(ctx, -1)) {
        std::string type = duk_is_undefined(ctx, -1) ? "undefined" : duk_is_null(ctx, -1) ? "null" : "not a function";
        duk_pop(ctx);
        // The host's "no such function", which callers already tell apart (an HTTP server's 404).
        return hl::guest::error{no_function, "no function '" + fn + "' in the script (it is " + type + ")",
                                HL_ERROR_FUNCTION_NOT_FOUND};
    }
    duk_push_lstring(ctx, json.data(), json.size());
    if (duk_safe_call(ctx, decode_unsafe, nullptr, 1, 1) != DUK_EXEC_SUCCESS) {
        auto e = failure(ctx, bad_argument, "the argument of '" + fn + "' is not valid JSON");
        duk_pop(ctx);  // the function
        return e;
    }
    if (duk_pcall(ctx, 1) != DUK_EXEC_SUCCESS) return failure(ctx, thrown, fn);
    std::string out, detail;
    if (!encode(ctx, out, detail)) {
        if (allocation_failed) {
            allocation_failed = false;
            return hl::guest::error{0, "the result of '" + fn + "' ran out of memory as JSON", HL_ERROR_OUT_OF_MEMORY};
        }
        return hl::guest::error{bad_result, "the result of '" + fn + "' cannot be encoded as JSON: " + detail};
    }
    return out;
}

hl::guest::result<std::string> eval(std::string_view expression) {
    if (engine == nullptr) return no_engine();
    allocation_failed = false;
    // Parenthesised so that an expression is what it takes ("{}" is an object, not a block); the
    // line break lets a trailing // comment through.
    const std::string source = "(" + std::string(expression) + "\n)";
    duk_push_string(engine, "eval");
    if (duk_pcompile_lstring_filename(engine, DUK_COMPILE_EVAL, source.data(), source.size()) != 0) {
        return failure(engine, compile_error, "Eval");
    }
    if (duk_pcall(engine, 0) != DUK_EXEC_SUCCESS) return failure(engine, thrown, "Eval");
    std::string out, detail;
    if (!encode(engine, out, detail)) {
        return hl::guest::error{bad_result, "the value cannot be encoded as JSON: " + detail};
    }
    return out;
}

}  // namespace

extern "C" void hl_guest_init() {
    // A failure leaves `engine` null and every call says so: the host gets an error, not a crash.
    if (!start_engine() && engine != nullptr) {
        duk_destroy_heap(engine);
        engine = nullptr;
    }
    hl::guest::register_function<load>("Load");
    hl::guest::register_function<call>("Call");
    hl::guest::register_function<eval>("Eval");
}
