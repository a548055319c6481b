// SPDX-License-Identifier: Apache-2.0
#include <cstdio>
#include <cstdlib>
#include <cstring>
#ifdef HL_GUEST_HOSTED
#include <exception>
#endif

#include "builder.hpp"
#include "hl/abi/hl_generated.h"
#include "hl/guest.h"
#include "io.hpp"

namespace fb = hl::fb;

struct hl_result {
    flatbuffers::FlatBufferBuilder* builder = nullptr;
    fb::ReturnValue type = fb::ReturnValue::NONE;
    flatbuffers::Offset<void> value{};
    bool failed = false;
    fb::ErrorKind error_kind = fb::ErrorKind::User;
    std::int32_t error_code = 0;
    flatbuffers::Offset<flatbuffers::String> error_message{};
};

namespace hl::guest::detail {
namespace {

struct function_entry {
    char* name;
    hl_type return_type;
    hl_type params[HL_MAX_PARAMETERS];
    std::size_t nparams;
    hl_guest_function fn;
};

function_entry* functions = nullptr;
std::size_t function_count = 0;

const function_entry* find_function(const char* name, std::size_t len) {
    for (std::size_t i = 0; i < function_count; ++i) {
        if (std::strlen(functions[i].name) == len && std::memcmp(functions[i].name, name, len) == 0) return &functions[i];
    }
    return nullptr;
}

const char* type_name(hl_type t) {
    static const char* const names[] = {"void", "int32", "uint32", "int64", "uint64",
                                        "float", "double", "bool", "string", "bytes"};
    return static_cast<unsigned>(t) <= HL_TYPE_BYTES ? names[t] : "unknown";
}

hl_type type_of(fb::ParameterValue v) {
    switch (v) {
    case fb::ParameterValue::hlint: return HL_TYPE_INT32;
    case fb::ParameterValue::hluint: return HL_TYPE_UINT32;
    case fb::ParameterValue::hllong: return HL_TYPE_INT64;
    case fb::ParameterValue::hlulong: return HL_TYPE_UINT64;
    case fb::ParameterValue::hlfloat: return HL_TYPE_FLOAT;
    case fb::ParameterValue::hldouble: return HL_TYPE_DOUBLE;
    case fb::ParameterValue::hlbool: return HL_TYPE_BOOL;
    case fb::ParameterValue::hlstring: return HL_TYPE_STRING;
    case fb::ParameterValue::hlbytes: return HL_TYPE_BYTES;
    case fb::ParameterValue::NONE: break;
    }
    return HL_TYPE_VOID;
}

hl_value to_value(const fb::Parameter& p) {
    hl_value v{};
    v.type = type_of(p.value_type());
    switch (p.value_type()) {
    case fb::ParameterValue::hlint: v.as.i32 = p.value_as_hlint()->value(); break;
    case fb::ParameterValue::hluint: v.as.u32 = p.value_as_hluint()->value(); break;
    case fb::ParameterValue::hllong: v.as.i64 = p.value_as_hllong()->value(); break;
    case fb::ParameterValue::hlulong: v.as.u64 = p.value_as_hlulong()->value(); break;
    case fb::ParameterValue::hlfloat: v.as.f32 = p.value_as_hlfloat()->value(); break;
    case fb::ParameterValue::hldouble: v.as.f64 = p.value_as_hldouble()->value(); break;
    case fb::ParameterValue::hlbool: v.as.b = p.value_as_hlbool()->value(); break;
    case fb::ParameterValue::hlstring: {
        const auto* s = p.value_as_hlstring()->value();
        v.as.str = {s->c_str(), s->size()};
        break;
    }
    case fb::ParameterValue::hlbytes: {
        const auto* b = p.value_as_hlbytes()->value();
        v.as.bytes = {b->data(), b->size()};
        break;
    }
    case fb::ParameterValue::NONE: break;
    }
    return v;
}

// Appends "(int32, string)" style signatures to a message.
void append_signature(char* buf, std::size_t size, const hl_type* types, std::size_t n) {
    std::size_t used = std::strlen(buf);
    used += std::snprintf(buf + used, used < size ? size - used : 0, "(");
    for (std::size_t i = 0; i < n && used < size; ++i) {
        used += std::snprintf(buf + used, size - used, "%s%s", i ? ", " : "", type_name(types[i]));
    }
    if (used < size) std::snprintf(buf + used, size - used, ")");
}

void send(flatbuffers::FlatBufferBuilder& b) {
    if (write_output(b.GetBufferPointer(), b.GetSize())) return;
    char message[160];
    std::snprintf(message, sizeof message, "the result is %u bytes; the output buffer holds %llu",
                  b.GetSize(), static_cast<unsigned long long>(peb().output_size - HL_BUFFER_HEADER_SIZE));
    flatbuffers::FlatBufferBuilder small(256);
    auto err = fb::CreateGuestError(small, fb::ErrorKind::ResultTooLarge, 0, small.CreateString(message));
    small.Finish(fb::CreateFunctionCallResult(small, fb::ReturnValue::NONE, 0, err));
    if (!write_output(small.GetBufferPointer(), small.GetSize())) hl_abort(HL_ABORT_PROTOCOL, "output buffer too small");
}

void send_error(fb::ErrorKind kind, const char* message) {
    flatbuffers::FlatBufferBuilder b(256);
    auto err = fb::CreateGuestError(b, kind, 0, b.CreateString(message));
    b.Finish(fb::CreateFunctionCallResult(b, fb::ReturnValue::NONE, 0, err));
    send(b);
}

}  // namespace

void dispatch_call() {
    const hl_peb& p = peb();
    hl_buffer_header header;
    std::memcpy(&header, reinterpret_cast<const void*>(p.input_addr), sizeof header);
    const auto* data = reinterpret_cast<const std::uint8_t*>(p.input_addr + HL_BUFFER_HEADER_SIZE);
    if (header.size > p.input_size - HL_BUFFER_HEADER_SIZE) {
        return send_error(fb::ErrorKind::MalformedCall, "the call is larger than the input buffer");
    }
    flatbuffers::Verifier verifier(data, header.size);
    if (!verifier.VerifyBuffer<fb::FunctionCall>(nullptr)) {
        return send_error(fb::ErrorKind::MalformedCall, "the input buffer does not hold a valid FunctionCall");
    }
    const auto* call = flatbuffers::GetRoot<fb::FunctionCall>(data);
    const auto* name = call->function_name();
    char message[512];
    const function_entry* f = find_function(name->c_str(), name->size());
    if (f == nullptr) {
        std::snprintf(message, sizeof message, "the guest has no function named '%s'", name->c_str());
        return send_error(fb::ErrorKind::FunctionNotFound, message);
    }

    hl_value args[HL_MAX_PARAMETERS];
    hl_type given[HL_MAX_PARAMETERS];
    const auto* params = call->parameters();
    const std::size_t nargs = params ? params->size() : 0;
    bool match = nargs == f->nparams;
    for (std::size_t i = 0; i < nargs && i < HL_MAX_PARAMETERS; ++i) {
        args[i] = to_value(*params->Get(static_cast<flatbuffers::uoffset_t>(i)));
        given[i] = args[i].type;
        match = match && given[i] == f->params[i];
    }
    if (!match) {
        std::snprintf(message, sizeof message, "'%s' takes ", f->name);
        append_signature(message, sizeof message, f->params, f->nparams);
        std::snprintf(message + std::strlen(message), sizeof message - std::strlen(message), "; called with ");
        append_signature(message, sizeof message, given, nargs < HL_MAX_PARAMETERS ? nargs : HL_MAX_PARAMETERS);
        return send_error(fb::ErrorKind::ParameterMismatch, message);
    }
    const auto expected = static_cast<hl_type>(call->expected_return_type());
    if (expected != f->return_type) {
        std::snprintf(message, sizeof message, "'%s' returns %s; the host asked for %s", f->name,
                      type_name(f->return_type), type_name(expected));
        return send_error(fb::ErrorKind::ReturnTypeMismatch, message);
    }

    static flatbuffers::FlatBufferBuilder kept(1024);
    reused_builder lease(kept);
    flatbuffers::FlatBufferBuilder& builder = lease.get();
    builder.ForceDefaults(true);  // or -0.0 would be dropped as equal to the default and come back +0.0
    hl_result result;
    result.builder = &builder;
#ifdef HL_GUEST_HOSTED
    // With the whole C++ runtime (the glibc flavour) a guest function may throw: the caller gets a
    // guest error with what() as its message, and the guest goes on.
    try {
        f->fn(args, nargs, &result);
    } catch (const std::exception& e) {
        result.failed = true;
        result.error_kind = fb::ErrorKind::User;
        result.error_code = 0;
        std::snprintf(message, sizeof message, "'%s' threw: %s", f->name, e.what());
        result.error_message = builder.CreateString(message);
    } catch (...) {
        result.failed = true;
        result.error_kind = fb::ErrorKind::User;
        result.error_code = 0;
        std::snprintf(message, sizeof message, "'%s' threw an exception that is not a std::exception", f->name);
        result.error_message = builder.CreateString(message);
    }
#else
    f->fn(args, nargs, &result);
#endif
    // The function's host calls and printing reused the output buffer; flush what it printed last.
    flush_output();
    if (result.failed) {
        auto err = fb::CreateGuestError(builder, result.error_kind, result.error_code, result.error_message);
        builder.Finish(fb::CreateFunctionCallResult(builder, fb::ReturnValue::NONE, 0, err));
    } else {
        if (f->return_type == HL_TYPE_VOID) {
            result.type = fb::ReturnValue::hlvoid;
            result.value = fb::Createhlvoid(builder).Union();
        } else if (result.type == fb::ReturnValue::NONE) {
            std::snprintf(message, sizeof message, "'%s' returned without setting its %s result", f->name,
                          type_name(f->return_type));
            return send_error(fb::ErrorKind::ReturnTypeMismatch, message);
        } else if (static_cast<hl_type>(result.type) != f->return_type) {
            // ReturnValue's members 1..9 are the hl_type values 1..9 (hlvoid is never set by a function).
            std::snprintf(message, sizeof message, "'%s' is registered as returning %s but returned %s", f->name,
                          type_name(f->return_type), type_name(static_cast<hl_type>(result.type)));
            return send_error(fb::ErrorKind::ReturnTypeMismatch, message);
        }
        builder.Finish(fb::CreateFunctionCallResult(builder, result.type, result.value));
    }
    send(builder);
}

}  // namespace hl::guest::detail

using hl::guest::detail::function_count;
using hl::guest::detail::functions;

extern "C" int hl_register_function(const char* name, hl_type return_type, const hl_type* params, std::size_t nparams,
                                    hl_guest_function fn) {
    if (name == nullptr || fn == nullptr || nparams > HL_MAX_PARAMETERS || (nparams > 0 && params == nullptr)) return -1;
    if (static_cast<unsigned>(return_type) > HL_TYPE_BYTES) return -1;
    for (std::size_t i = 0; i < nparams; ++i) {
        if (params[i] == HL_TYPE_VOID || static_cast<unsigned>(params[i]) > HL_TYPE_BYTES) return -1;
    }
    if (hl::guest::detail::find_function(name, std::strlen(name)) != nullptr) return -1;
    auto* grown = static_cast<hl::guest::detail::function_entry*>(
        std::realloc(functions, (function_count + 1) * sizeof *functions));
    char* copy = static_cast<char*>(std::malloc(std::strlen(name) + 1));
    if (grown == nullptr || copy == nullptr) hl_abort(HL_ABORT_OUT_OF_MEMORY, "out of memory registering a function");
    functions = grown;
    std::strcpy(copy, name);
    auto& f = functions[function_count++];
    f.name = copy;
    f.return_type = return_type;
    std::memcpy(f.params, params, nparams * sizeof *params);
    f.nparams = nparams;
    f.fn = fn;
    return 0;
}

namespace {

template <class Table, class... Args>
void set_result(hl_result* r, fb::ReturnValue type, Args... args) {
    auto& b = *r->builder;
    r->type = type;
    if constexpr (std::is_same_v<Table, fb::hlint>) r->value = fb::Createhlint(b, args...).Union();
    else if constexpr (std::is_same_v<Table, fb::hluint>) r->value = fb::Createhluint(b, args...).Union();
    else if constexpr (std::is_same_v<Table, fb::hllong>) r->value = fb::Createhllong(b, args...).Union();
    else if constexpr (std::is_same_v<Table, fb::hlulong>) r->value = fb::Createhlulong(b, args...).Union();
    else if constexpr (std::is_same_v<Table, fb::hlfloat>) r->value = fb::Createhlfloat(b, args...).Union();
    else if constexpr (std::is_same_v<Table, fb::hldouble>) r->value = fb::Createhldouble(b, args...).Union();
    else if constexpr (std::is_same_v<Table, fb::hlbool>) r->value = fb::Createhlbool(b, args...).Union();
}

}  // namespace

extern "C" {
void hl_return_int32(hl_result* r, std::int32_t v) { set_result<fb::hlint>(r, fb::ReturnValue::hlint, v); }
void hl_return_uint32(hl_result* r, std::uint32_t v) { set_result<fb::hluint>(r, fb::ReturnValue::hluint, v); }
void hl_return_int64(hl_result* r, std::int64_t v) { set_result<fb::hllong>(r, fb::ReturnValue::hllong, v); }
void hl_return_uint64(hl_result* r, std::uint64_t v) { set_result<fb::hlulong>(r, fb::ReturnValue::hlulong, v); }
void hl_return_float(hl_result* r, float v) { set_result<fb::hlfloat>(r, fb::ReturnValue::hlfloat, v); }
void hl_return_double(hl_result* r, double v) { set_result<fb::hldouble>(r, fb::ReturnValue::hldouble, v); }
void hl_return_bool(hl_result* r, bool v) { set_result<fb::hlbool>(r, fb::ReturnValue::hlbool, v); }

void hl_return_string(hl_result* r, const char* data, std::size_t len) {
    auto& b = *r->builder;
    auto s = b.CreateString(data, len);
    r->type = fb::ReturnValue::hlstring;
    r->value = fb::Createhlstring(b, s).Union();
}

void hl_return_bytes(hl_result* r, const std::uint8_t* data, std::size_t len) {
    auto& b = *r->builder;
    auto v = b.CreateVector(data, len);
    r->type = fb::ReturnValue::hlbytes;
    r->value = fb::Createhlbytes(b, v).Union();
}

void hl_return_error(hl_result* r, std::int32_t code, const char* message) {
    r->failed = true;
    r->error_kind = fb::ErrorKind::User;
    r->error_code = code;
    r->error_message = r->builder->CreateString(message ? message : "");
}

void hl_return_call_error(hl_result* r, const hl_error* error) {
    hl_return_error(r, error->code, error->message);
    if (static_cast<unsigned>(error->kind) <= static_cast<unsigned>(fb::ErrorKind::MAX)) {
        r->error_kind = static_cast<fb::ErrorKind>(error->kind);
    }
}
}
