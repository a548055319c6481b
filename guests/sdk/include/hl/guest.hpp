// SPDX-License-Identifier: Apache-2.0
// The C++ API of the guest SDK: register plain functions and the SDK deduces their signatures.
//
//   std::string echo(std::string_view s) { return std::string(s); }
//   void hl_guest_init() { hl::guest::register_function<echo>("Echo"); }
//
// Parameter types: int32_t, uint32_t, int64_t, uint64_t, float, double, bool, std::string_view,
// std::string, std::span<const uint8_t>, std::vector<uint8_t> (views point into the host's message
// and are valid until the function returns). Return types: the same, or void, or hl::guest::result<T>
// to fail with an error:
//
//   hl::guest::result<std::int32_t> add(std::int32_t a, std::int32_t b) {
//       auto sum = hl::guest::call_host<std::int32_t>("HostAdd", a, b);
//       if (!sum) return sum.error();   // pass the host's error on to the caller
//       return *sum;
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "hl/guest.h"

namespace hl::guest {

/// A failed call: the caller sees errc::guest_error with this code and message, or, for an error
/// received from call_host() and passed on unchanged, the error the host function raised.
struct error {
    std::int32_t code = 0;
    std::string message;
    hl_error_kind kind = HL_ERROR_USER;
};

/// Either a value or an error.
template <class T>
class result {
public:
    result(T value) : v_(std::move(value)) {}
    result(hl::guest::error e) : v_(std::move(e)) {}

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }
    T& value() { return std::get<0>(v_); }
    T& operator*() { return value(); }
    T* operator->() { return &value(); }
    const hl::guest::error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, hl::guest::error> v_;
};

template <>
class result<void> {
public:
    result() = default;
    result(hl::guest::error e) : error_(std::move(e)), failed_(true) {}

    bool has_value() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return has_value(); }
    const hl::guest::error& error() const { return error_; }

private:
    hl::guest::error error_;
    bool failed_ = false;
};

namespace detail {

template <class T>
struct type_of;
template <> struct type_of<std::int32_t> { static constexpr hl_type value = HL_TYPE_INT32; };
template <> struct type_of<std::uint32_t> { static constexpr hl_type value = HL_TYPE_UINT32; };
template <> struct type_of<std::int64_t> { static constexpr hl_type value = HL_TYPE_INT64; };
template <> struct type_of<std::uint64_t> { static constexpr hl_type value = HL_TYPE_UINT64; };
template <> struct type_of<float> { static constexpr hl_type value = HL_TYPE_FLOAT; };
template <> struct type_of<double> { static constexpr hl_type value = HL_TYPE_DOUBLE; };
template <> struct type_of<bool> { static constexpr hl_type value = HL_TYPE_BOOL; };
template <> struct type_of<std::string_view> { static constexpr hl_type value = HL_TYPE_STRING; };
template <> struct type_of<std::string> { static constexpr hl_type value = HL_TYPE_STRING; };
template <> struct type_of<std::span<const std::uint8_t>> { static constexpr hl_type value = HL_TYPE_BYTES; };
template <> struct type_of<std::vector<std::uint8_t>> { static constexpr hl_type value = HL_TYPE_BYTES; };
template <> struct type_of<void> { static constexpr hl_type value = HL_TYPE_VOID; };
template <class T> struct type_of<result<T>> : type_of<T> {};

template <class T>
using bare = std::remove_cvref_t<T>;

template <class T>
struct result_value;
template <class T>
struct result_value<result<T>> {
    using type = T;
};

template <class T>
bare<T> from_value(const hl_value& v) {
    using U = bare<T>;
    if constexpr (std::is_same_v<U, std::int32_t>) return v.as.i32;
    else if constexpr (std::is_same_v<U, std::uint32_t>) return v.as.u32;
    else if constexpr (std::is_same_v<U, std::int64_t>) return v.as.i64;
    else if constexpr (std::is_same_v<U, std::uint64_t>) return v.as.u64;
    else if constexpr (std::is_same_v<U, float>) return v.as.f32;
    else if constexpr (std::is_same_v<U, double>) return v.as.f64;
    else if constexpr (std::is_same_v<U, bool>) return v.as.b;
    else if constexpr (std::is_same_v<U, std::string_view> || std::is_same_v<U, std::string>) return U(v.as.str.data, v.as.str.len);
    else return U(v.as.bytes.data, v.as.bytes.data + v.as.bytes.len);
}

inline void set_error(hl_result* r, const error& e) {
    const hl_error raw{e.kind, e.code, e.message.c_str()};
    hl_return_call_error(r, &raw);
}

template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<result<T>> : std::true_type {};

template <class R>
void set_result(hl_result* r, R&& value) {
    using U = bare<R>;
    if constexpr (is_result<U>::value) {
        if (!value) set_error(r, value.error());
        else if constexpr (!std::is_void_v<typename result_value<U>::type>) set_result(r, std::move(value.value()));
    } else if constexpr (std::is_same_v<U, std::int32_t>) hl_return_int32(r, value);
    else if constexpr (std::is_same_v<U, std::uint32_t>) hl_return_uint32(r, value);
    else if constexpr (std::is_same_v<U, std::int64_t>) hl_return_int64(r, value);
    else if constexpr (std::is_same_v<U, std::uint64_t>) hl_return_uint64(r, value);
    else if constexpr (std::is_same_v<U, float>) hl_return_float(r, value);
    else if constexpr (std::is_same_v<U, double>) hl_return_double(r, value);
    else if constexpr (std::is_same_v<U, bool>) hl_return_bool(r, value);
    else if constexpr (std::is_same_v<U, std::string_view> || std::is_same_v<U, std::string>) hl_return_string(r, value.data(), value.size());
    else hl_return_bytes(r, value.data(), value.size());
}

template <auto Fn, class R, class... A, std::size_t... I>
void invoke(const hl_value* args, hl_result* result, std::index_sequence<I...>) {
    if constexpr (std::is_void_v<R>) {
        Fn(from_value<A>(args[I])...);
    } else {
        set_result(result, Fn(from_value<A>(args[I])...));
    }
}

template <auto Fn, class R, class... A>
void thunk(const hl_value* args, std::size_t, hl_result* result) {
    invoke<Fn, R, A...>(args, result, std::index_sequence_for<A...>{});
}

template <auto Fn, class R, class... A>
int register_with(const char* name, R (*)(A...)) {
    static_assert(sizeof...(A) <= HL_MAX_PARAMETERS, "guest functions take at most 32 parameters");
    const hl_type params[sizeof...(A) + 1] = {type_of<bare<A>>::value..., HL_TYPE_VOID};
    return hl_register_function(name, type_of<bare<R>>::value, params, sizeof...(A), &thunk<Fn, R, A...>);
}

/// Converts a C++ argument for call_host().
template <class T>
hl_value to_value(const T& v) {
    using U = bare<T>;
    hl_value out{};
    if constexpr (std::is_same_v<U, bool>) { out.type = HL_TYPE_BOOL; out.as.b = v; }
    else if constexpr (std::is_same_v<U, std::int32_t>) { out.type = HL_TYPE_INT32; out.as.i32 = v; }
    else if constexpr (std::is_same_v<U, std::uint32_t>) { out.type = HL_TYPE_UINT32; out.as.u32 = v; }
    else if constexpr (std::is_same_v<U, std::int64_t>) { out.type = HL_TYPE_INT64; out.as.i64 = v; }
    else if constexpr (std::is_same_v<U, std::uint64_t>) { out.type = HL_TYPE_UINT64; out.as.u64 = v; }
    else if constexpr (std::is_same_v<U, float>) { out.type = HL_TYPE_FLOAT; out.as.f32 = v; }
    else if constexpr (std::is_same_v<U, double>) { out.type = HL_TYPE_DOUBLE; out.as.f64 = v; }
    else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
        const std::string_view s(v);
        out.type = HL_TYPE_STRING;
        out.as.str = {s.data(), s.size()};
    } else {
        const std::span<const std::uint8_t> b(v);
        out.type = HL_TYPE_BYTES;
        out.as.bytes = {b.data(), b.size()};
    }
    return out;
}

}  // namespace detail

/// Calls the host function `name` and returns its result (copied out of the output buffer) or the
/// error the host reported. One VM exit per call.
template <class R = void, class... Args>
result<R> call_host(const char* name, const Args&... args) {
    static_assert(sizeof...(Args) <= HL_MAX_PARAMETERS, "host functions take at most 32 parameters");
    const hl_value values[sizeof...(Args) + 1] = {detail::to_value(args)..., hl_value{}};
    hl_value out{};
    hl_error err{};
    if (hl_call_host(name, detail::type_of<R>::value, values, sizeof...(Args), &out, &err) != 0) {
        return error{err.code, err.message, err.kind};
    }
    if constexpr (std::is_void_v<R>) {
        return {};
    } else {
        return detail::from_value<R>(out);
    }
}

/// Registers `Fn` (a function or captureless lambda, passed as a template argument so the call costs
/// no indirection) under `name`. Returns 0, or -1 if the name is taken.
///
///   hl::guest::register_function<echo>("Echo");
template <auto Fn>
int register_function(const char* name) {
    return detail::register_with<Fn>(name, +Fn);
}

}  // namespace hl::guest
