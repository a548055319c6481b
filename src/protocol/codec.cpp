// SPDX-License-Identifier: Apache-2.0
#include "protocol/codec.hpp"

#include <type_traits>

#include "hl/abi/hl_generated.h"
#include "hl/error.hpp"
#include "util/strfmt.hpp"

namespace hl::protocol {
namespace {

namespace fb = hl::fb;

static_assert(static_cast<int>(fb::ValueType::Bytes) == static_cast<int>(value_type::bytes),
              "fb::ValueType and hl::value_type list the same types in the same order");
static_assert(static_cast<int>(fb::LogLevel::Critical) == static_cast<int>(log_level::critical),
              "fb::LogLevel and hl::log_level list the same levels in the same order");
static_assert(static_cast<int>(fb::ErrorKind::ArgumentTooLarge) == static_cast<int>(guest_error_kind::argument_too_large),
              "fb::ErrorKind and guest_error_kind list the same kinds in the same order");

// Scalars equal to their default are normally left out of a FlatBuffer; -0.0 compares equal to the
// default 0.0 and would come back as +0.0. Always store them.
void start(flatbuffers::FlatBufferBuilder& b) {
    b.Clear();
    b.ForceDefaults(true);
}

std::span<const std::byte> finished(flatbuffers::FlatBufferBuilder& b) {
    return {reinterpret_cast<const std::byte*>(b.GetBufferPointer()), b.GetSize()};
}

flatbuffers::Offset<fb::Parameter> encode_argument(flatbuffers::FlatBufferBuilder& b, const argument& a) {
    return std::visit(
        [&b](const auto& v) -> flatbuffers::Offset<fb::Parameter> {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::int32_t>) {
                return fb::CreateParameter(b, fb::ParameterValue::hlint, fb::Createhlint(b, v).Union());
            } else if constexpr (std::is_same_v<T, std::uint32_t>) {
                return fb::CreateParameter(b, fb::ParameterValue::hluint, fb::Createhluint(b, v).Union());
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                return fb::CreateParameter(b, fb::ParameterValue::hllong, fb::Createhllong(b, v).Union());
            } else if constexpr (std::is_same_v<T, std::uint64_t>) {
                return fb::CreateParameter(b, fb::ParameterValue::hlulong, fb::Createhlulong(b, v).Union());
            } else if constexpr (std::is_same_v<T, float>) {
                return fb::CreateParameter(b, fb::ParameterValue::hlfloat, fb::Createhlfloat(b, v).Union());
            } else if constexpr (std::is_same_v<T, double>) {
                return fb::CreateParameter(b, fb::ParameterValue::hldouble, fb::Createhldouble(b, v).Union());
            } else if constexpr (std::is_same_v<T, bool>) {
                return fb::CreateParameter(b, fb::ParameterValue::hlbool, fb::Createhlbool(b, v).Union());
            } else if constexpr (std::is_same_v<T, std::string_view>) {
                auto s = b.CreateString(v.data(), v.size());
                return fb::CreateParameter(b, fb::ParameterValue::hlstring, fb::Createhlstring(b, s).Union());
            } else {
                auto bytes = b.CreateVector(v.data(), v.size());
                return fb::CreateParameter(b, fb::ParameterValue::hlbytes, fb::Createhlbytes(b, bytes).Union());
            }
        },
        a);
}

argument decode_argument(const fb::Parameter& p) {
    switch (p.value_type()) {
    case fb::ParameterValue::hlint: return p.value_as_hlint()->value();
    case fb::ParameterValue::hluint: return p.value_as_hluint()->value();
    case fb::ParameterValue::hllong: return p.value_as_hllong()->value();
    case fb::ParameterValue::hlulong: return p.value_as_hlulong()->value();
    case fb::ParameterValue::hlfloat: return p.value_as_hlfloat()->value();
    case fb::ParameterValue::hldouble: return p.value_as_hldouble()->value();
    case fb::ParameterValue::hlbool: return p.value_as_hlbool()->value();
    case fb::ParameterValue::hlstring: return p.value_as_hlstring()->value()->string_view();
    case fb::ParameterValue::hlbytes: {
        const auto* v = p.value_as_hlbytes()->value();
        return std::span<const std::uint8_t>(v->data(), v->size());
    }
    case fb::ParameterValue::NONE: break;
    }
    throw error(errc::protocol_error, "a FunctionCall parameter has no value");
}

return_value decode_return_value(const fb::FunctionCallResult& r) {
    // The Verifier accepts a union whose type is set but whose value is absent.
    if (r.return_value_type() != fb::ReturnValue::NONE && r.return_value() == nullptr) {
        throw error(errc::protocol_error, "the FunctionCallResult names a return type but holds no value");
    }
    switch (r.return_value_type()) {
    case fb::ReturnValue::hlvoid: return std::monostate{};
    case fb::ReturnValue::hlint: return r.return_value_as_hlint()->value();
    case fb::ReturnValue::hluint: return r.return_value_as_hluint()->value();
    case fb::ReturnValue::hllong: return r.return_value_as_hllong()->value();
    case fb::ReturnValue::hlulong: return r.return_value_as_hlulong()->value();
    case fb::ReturnValue::hlfloat: return r.return_value_as_hlfloat()->value();
    case fb::ReturnValue::hldouble: return r.return_value_as_hldouble()->value();
    case fb::ReturnValue::hlbool: return r.return_value_as_hlbool()->value();
    case fb::ReturnValue::hlstring: return r.return_value_as_hlstring()->value()->str();
    case fb::ReturnValue::hlbytes: {
        const auto* v = r.return_value_as_hlbytes()->value();
        return std::vector<std::uint8_t>(v->begin(), v->end());
    }
    case fb::ReturnValue::NONE: break;
    }
    throw error(errc::protocol_error, "the FunctionCallResult holds neither a value nor an error");
}

template <class Root>
const Root* verified_root(std::span<const std::byte> message, const char* what) {
    const auto* data = reinterpret_cast<const std::uint8_t*>(message.data());
    flatbuffers::Verifier verifier(data, message.size());
    if (message.size() < sizeof(flatbuffers::uoffset_t) || !verifier.VerifyBuffer<Root>(nullptr)) {
        throw error(errc::protocol_error,
                    util::strfmt("the guest's %zu-byte message is not a valid %s FlatBuffer", message.size(), what));
    }
    return flatbuffers::GetRoot<Root>(data);
}

}  // namespace


std::span<const std::byte> encode_call(flatbuffers::FlatBufferBuilder& b, std::string_view function_name,
                                       value_type expected_return, std::span<const argument> arguments) {
    if (arguments.size() > max_parameters) {
        throw error(errc::parameter_mismatch, util::strfmt("%zu arguments given; functions take at most %zu",
                                                           arguments.size(), max_parameters));
    }
    // Large calls: size the builder once instead of letting it double (and copy) its way up.
    std::size_t estimate = 256 + function_name.size();
    for (const auto& a : arguments) {
        if (const auto* s = std::get_if<std::string_view>(&a)) estimate += s->size() + 64;
        else if (const auto* v = std::get_if<std::span<const std::uint8_t>>(&a)) estimate += v->size() + 64;
        else estimate += 64;
    }
    if (estimate > (std::size_t{1} << 20)) b = flatbuffers::FlatBufferBuilder(estimate);
    start(b);
    flatbuffers::Offset<fb::Parameter> params[max_parameters];
    for (std::size_t i = 0; i < arguments.size(); ++i) params[i] = encode_argument(b, arguments[i]);
    auto name = b.CreateString(function_name.data(), function_name.size());
    auto vec = b.CreateVector(params, arguments.size());
    b.Finish(fb::CreateFunctionCall(b, name, vec, static_cast<fb::ValueType>(expected_return)));
    return finished(b);
}

call_view decode_call(std::span<const std::byte> message) {
    const auto* call = verified_root<fb::FunctionCall>(message, "FunctionCall");
    call_view view;
    view.function_name = call->function_name()->string_view();
    const auto raw_return = static_cast<std::uint8_t>(call->expected_return_type());
    if (raw_return > static_cast<std::uint8_t>(value_type::bytes)) {
        throw error(errc::protocol_error, util::strfmt("a FunctionCall expects unknown return type %u", raw_return));
    }
    view.expected_return = static_cast<value_type>(raw_return);
    if (const auto* params = call->parameters()) {
        if (params->size() > max_parameters) {
            throw error(errc::protocol_error, util::strfmt("a FunctionCall has %u parameters; at most %zu are allowed",
                                                           params->size(), max_parameters));
        }
        view.arguments.reserve(params->size());
        for (const auto* p : *params) view.arguments.push_back(decode_argument(*p));
    }
    return view;
}

std::span<const std::byte> encode_result(flatbuffers::FlatBufferBuilder& b, const return_value& value) {
    start(b);
    auto [type, offset] = std::visit(
        [&b](const auto& v) -> std::pair<fb::ReturnValue, flatbuffers::Offset<void>> {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) return {fb::ReturnValue::hlvoid, fb::Createhlvoid(b).Union()};
            else if constexpr (std::is_same_v<T, std::int32_t>) return {fb::ReturnValue::hlint, fb::Createhlint(b, v).Union()};
            else if constexpr (std::is_same_v<T, std::uint32_t>) return {fb::ReturnValue::hluint, fb::Createhluint(b, v).Union()};
            else if constexpr (std::is_same_v<T, std::int64_t>) return {fb::ReturnValue::hllong, fb::Createhllong(b, v).Union()};
            else if constexpr (std::is_same_v<T, std::uint64_t>) return {fb::ReturnValue::hlulong, fb::Createhlulong(b, v).Union()};
            else if constexpr (std::is_same_v<T, float>) return {fb::ReturnValue::hlfloat, fb::Createhlfloat(b, v).Union()};
            else if constexpr (std::is_same_v<T, double>) return {fb::ReturnValue::hldouble, fb::Createhldouble(b, v).Union()};
            else if constexpr (std::is_same_v<T, bool>) return {fb::ReturnValue::hlbool, fb::Createhlbool(b, v).Union()};
            else if constexpr (std::is_same_v<T, std::string>) {
                auto s = b.CreateString(v);
                return {fb::ReturnValue::hlstring, fb::Createhlstring(b, s).Union()};
            } else {
                auto bytes = b.CreateVector(v);
                return {fb::ReturnValue::hlbytes, fb::Createhlbytes(b, bytes).Union()};
            }
        },
        value);
    b.Finish(fb::CreateFunctionCallResult(b, type, offset));
    return finished(b);
}

std::span<const std::byte> encode_error(flatbuffers::FlatBufferBuilder& b, const guest_error_info& e) {
    start(b);
    auto message = b.CreateString(e.message);
    auto err = fb::CreateGuestError(b, static_cast<fb::ErrorKind>(e.kind), e.code, message);
    b.Finish(fb::CreateFunctionCallResult(b, fb::ReturnValue::NONE, 0, err));
    return finished(b);
}

call_result decode_result(std::span<const std::byte> message) {
    const auto* r = verified_root<fb::FunctionCallResult>(message, "FunctionCallResult");
    const bool has_value = r->return_value_type() != fb::ReturnValue::NONE;
    if (const auto* e = r->error()) {
        if (has_value) throw error(errc::protocol_error, "the FunctionCallResult holds both a value and an error");
        const auto kind = static_cast<std::uint8_t>(e->kind());
        if (kind > static_cast<std::uint8_t>(guest_error_kind::argument_too_large)) {
            throw error(errc::protocol_error, util::strfmt("the guest reported an unknown error kind %u", kind));
        }
        return {std::monostate{},
                guest_error_info{static_cast<guest_error_kind>(kind), e->code(),
                                 e->message() ? e->message()->str() : std::string()}};
    }
    return {decode_return_value(*r), std::nullopt};
}

log_record decode_log_record(std::span<const std::byte> message) {
    const auto* r = verified_root<fb::LogRecord>(message, "LogRecord");
    const auto level = static_cast<std::uint8_t>(r->level());
    if (level > static_cast<std::uint8_t>(log_level::critical)) {
        throw error(errc::protocol_error, util::strfmt("a guest log record has unknown level %u", level));
    }
    log_record record;
    record.level = static_cast<log_level>(level);
    if (r->message()) record.message = r->message()->string_view();
    if (r->file()) record.file = r->file()->string_view();
    record.line = r->line();
    return record;
}

}  // namespace hl::protocol

namespace hl {

const char* to_string(log_level level) noexcept {
    switch (level) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    case log_level::critical: return "critical";
    }
    return "unknown";
}

const char* type_name(value_type t) noexcept {
    switch (t) {
    case value_type::void_type: return "void";
    case value_type::int32: return "int32";
    case value_type::uint32: return "uint32";
    case value_type::int64: return "int64";
    case value_type::uint64: return "uint64";
    case value_type::float32: return "float";
    case value_type::float64: return "double";
    case value_type::boolean: return "bool";
    case value_type::string: return "string";
    case value_type::bytes: return "bytes";
    }
    return "unknown";
}

}  // namespace hl
