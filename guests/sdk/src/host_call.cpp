// SPDX-License-Identifier: Apache-2.0
// Calls from the guest into host functions: the FunctionCall goes out through the output buffer and
// the host's FunctionCallResult comes back in the same place.
#include <cstdio>
#include <cstring>

#include "builder.hpp"
#include "hl/abi/hl_generated.h"
#include "hl/guest.h"
#include "io.hpp"

namespace fb = hl::fb;

namespace {

// Error messages are copied here so they survive later use of the output buffer (printing).
char error_message[1024];

int fail(hl_error* error, hl_error_kind kind, std::int32_t code, const char* message) {
    std::snprintf(error_message, sizeof error_message, "%s", message);
    if (error) *error = {kind, code, error_message};
    return -1;
}

flatbuffers::Offset<fb::Parameter> encode(flatbuffers::FlatBufferBuilder& b, const hl_value& v) {
    switch (v.type) {
    case HL_TYPE_INT32: return fb::CreateParameter(b, fb::ParameterValue::hlint, fb::Createhlint(b, v.as.i32).Union());
    case HL_TYPE_UINT32: return fb::CreateParameter(b, fb::ParameterValue::hluint, fb::Createhluint(b, v.as.u32).Union());
    case HL_TYPE_INT64: return fb::CreateParameter(b, fb::ParameterValue::hllong, fb::Createhllong(b, v.as.i64).Union());
    case HL_TYPE_UINT64: return fb::CreateParameter(b, fb::ParameterValue::hlulong, fb::Createhlulong(b, v.as.u64).Union());
    case HL_TYPE_FLOAT: return fb::CreateParameter(b, fb::ParameterValue::hlfloat, fb::Createhlfloat(b, v.as.f32).Union());
    case HL_TYPE_DOUBLE: return fb::CreateParameter(b, fb::ParameterValue::hldouble, fb::Createhldouble(b, v.as.f64).Union());
    case HL_TYPE_BOOL: return fb::CreateParameter(b, fb::ParameterValue::hlbool, fb::Createhlbool(b, v.as.b).Union());
    case HL_TYPE_STRING: {
        auto s = b.CreateString(v.as.str.data, v.as.str.len);
        return fb::CreateParameter(b, fb::ParameterValue::hlstring, fb::Createhlstring(b, s).Union());
    }
    case HL_TYPE_BYTES: {
        auto d = b.CreateVector(v.as.bytes.data, v.as.bytes.len);
        return fb::CreateParameter(b, fb::ParameterValue::hlbytes, fb::Createhlbytes(b, d).Union());
    }
    case HL_TYPE_VOID: break;
    }
    return {};
}

bool decode(const fb::FunctionCallResult& r, hl_type expected, hl_value* out) {
    hl_value v{};
    v.type = expected;
    switch (r.return_value_type()) {
    case fb::ReturnValue::hlint: v.as.i32 = r.return_value_as_hlint()->value(); break;
    case fb::ReturnValue::hluint: v.as.u32 = r.return_value_as_hluint()->value(); break;
    case fb::ReturnValue::hllong: v.as.i64 = r.return_value_as_hllong()->value(); break;
    case fb::ReturnValue::hlulong: v.as.u64 = r.return_value_as_hlulong()->value(); break;
    case fb::ReturnValue::hlfloat: v.as.f32 = r.return_value_as_hlfloat()->value(); break;
    case fb::ReturnValue::hldouble: v.as.f64 = r.return_value_as_hldouble()->value(); break;
    case fb::ReturnValue::hlbool: v.as.b = r.return_value_as_hlbool()->value(); break;
    case fb::ReturnValue::hlstring: {
        const auto* s = r.return_value_as_hlstring()->value();
        v.as.str = {s->c_str(), s->size()};
        break;
    }
    case fb::ReturnValue::hlbytes: {
        const auto* d = r.return_value_as_hlbytes()->value();
        v.as.bytes = {d->data(), d->size()};
        break;
    }
    case fb::ReturnValue::hlvoid: break;
    case fb::ReturnValue::NONE: return false;
    }
    // ReturnValue's members 1..9 are hl_type's 1..9; hlvoid stands for HL_TYPE_VOID.
    const hl_type got = r.return_value_type() == fb::ReturnValue::hlvoid ? HL_TYPE_VOID : static_cast<hl_type>(r.return_value_type());
    if (got != expected || r.return_value() == nullptr) return false;
    if (out) *out = v;
    return true;
}

}  // namespace

extern "C" int hl_call_host(const char* name, hl_type return_type, const hl_value* args, std::size_t nargs,
                            hl_value* result, hl_error* error) {
    using namespace hl::guest::detail;
    if (name == nullptr || nargs > HL_MAX_PARAMETERS || (nargs > 0 && args == nullptr) ||
        static_cast<unsigned>(return_type) > HL_TYPE_BYTES) {
        return fail(error, HL_ERROR_MALFORMED_CALL, 0, "hl_call_host: invalid arguments");
    }
    {
        static flatbuffers::FlatBufferBuilder kept(256);
        reused_builder lease(kept);
        flatbuffers::FlatBufferBuilder& b = lease.get();
        b.ForceDefaults(true);  // keeps -0.0 (equal to the default 0.0) on the wire
        flatbuffers::Offset<fb::Parameter> params[HL_MAX_PARAMETERS];
        for (std::size_t i = 0; i < nargs; ++i) {
            if (args[i].type == HL_TYPE_VOID || static_cast<unsigned>(args[i].type) > HL_TYPE_BYTES) {
                return fail(error, HL_ERROR_PARAMETER_MISMATCH, 0, "hl_call_host: an argument has no valid type");
            }
            params[i] = encode(b, args[i]);
        }
        auto fname = b.CreateString(name);
        auto vec = b.CreateVector(params, nargs);
        b.Finish(fb::CreateFunctionCall(b, fname, vec, static_cast<fb::ValueType>(return_type)));
        if (!write_output(b.GetBufferPointer(), b.GetSize())) {
            char message[160];
            std::snprintf(message, sizeof message, "the call to host function '%s' is %u bytes; the output buffer holds %llu",
                          name, b.GetSize(), static_cast<unsigned long long>(peb().output_size - HL_BUFFER_HEADER_SIZE));
            return fail(error, HL_ERROR_ARGUMENT_TOO_LARGE, 0, message);
        }
    }
    out32(HL_PORT_HOST_CALL, 0);

    hl_buffer_header header;
    std::memcpy(&header, reinterpret_cast<const void*>(peb().output_addr), sizeof header);
    const auto* data = reinterpret_cast<const std::uint8_t*>(peb().output_addr + HL_BUFFER_HEADER_SIZE);
    flatbuffers::Verifier verifier(data, header.size);
    if (header.size > peb().output_size - HL_BUFFER_HEADER_SIZE || !verifier.VerifyBuffer<fb::FunctionCallResult>(nullptr)) {
        hl_abort(HL_ABORT_PROTOCOL, "the host's reply to a host call is not a valid FunctionCallResult");
    }
    const auto* r = flatbuffers::GetRoot<fb::FunctionCallResult>(data);
    if (const auto* e = r->error()) {
        return fail(error, static_cast<hl_error_kind>(e->kind()), e->code(), e->message() ? e->message()->c_str() : "");
    }
    if (!decode(*r, return_type, result)) {
        return fail(error, HL_ERROR_RETURN_TYPE_MISMATCH, 0, "the host's reply does not have the requested type");
    }
    return 0;
}

#define HL_GETTER(suffix, tag, ctype, member)                               \
    extern "C" bool hl_value_get_##suffix(const hl_value* v, ctype* out) { \
        if (v == nullptr || v->type != tag) return false;                   \
        *out = v->as.member;                                                \
        return true;                                                        \
    }
HL_GETTER(int32, HL_TYPE_INT32, std::int32_t, i32)
HL_GETTER(uint32, HL_TYPE_UINT32, std::uint32_t, u32)
HL_GETTER(int64, HL_TYPE_INT64, std::int64_t, i64)
HL_GETTER(uint64, HL_TYPE_UINT64, std::uint64_t, u64)
HL_GETTER(float, HL_TYPE_FLOAT, float, f32)
HL_GETTER(double, HL_TYPE_DOUBLE, double, f64)
HL_GETTER(bool, HL_TYPE_BOOL, bool, b)
#undef HL_GETTER

extern "C" bool hl_value_get_string(const hl_value* v, const char** data, std::size_t* len) {
    if (v == nullptr || v->type != HL_TYPE_STRING) return false;
    *data = v->as.str.data;
    *len = v->as.str.len;
    return true;
}

extern "C" bool hl_value_get_bytes(const hl_value* v, const std::uint8_t** data, std::size_t* len) {
    if (v == nullptr || v->type != HL_TYPE_BYTES) return false;
    *data = v->as.bytes.data;
    *len = v->as.bytes.len;
    return true;
}
