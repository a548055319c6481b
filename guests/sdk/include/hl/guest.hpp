// SPDX-License-Identifier: Apache-2.0
// The C++ API of the guest SDK: register plain functions and the SDK deduces their signatures.
//
//   std::string echo(std::string_view s) { return std::string(s); }
//   void hl_guest_init() { hl::guest::register_function("Echo", echo); }
//
// Parameter types: int32_t, uint32_t, int64_t, uint64_t, float, double, bool, std::string_view,
// std::string, std::span<const uint8_t>, std::vector<uint8_t> (views point into the host's message
// and are valid until the function returns). Return types: the same, or void.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "hl/guest.h"

namespace hl::guest {

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

template <class T>
using bare = std::remove_cvref_t<T>;

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

template <class R>
void set_result(hl_result* r, R&& value) {
    using U = bare<R>;
    if constexpr (std::is_same_v<U, std::int32_t>) hl_return_int32(r, value);
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

}  // namespace detail

/// Registers `Fn` (a function or captureless lambda, passed as a template argument so the call costs
/// no indirection) under `name`. Returns 0, or -1 if the name is taken.
///
///   hl::guest::register_function<echo>("Echo");
template <auto Fn>
int register_function(const char* name) {
    return detail::register_with<Fn>(name, +Fn);
}

}  // namespace hl::guest
