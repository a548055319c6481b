// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "hl/error.hpp"

namespace hl {

/// The types a guest or host function can take and return (Hyperlight's set).
enum class value_type : std::uint8_t { void_type, int32, uint32, int64, uint64, float32, float64, boolean, string, bytes };

/// One argument of a call, viewing the caller's data (nothing is copied until serialization).
using argument = std::variant<std::int32_t, std::uint32_t, std::int64_t, std::uint64_t, float, double, bool,
                              std::string_view, std::span<const std::uint8_t>>;

/// A function's result, owning its data. std::monostate is void.
using return_value = std::variant<std::monostate, std::int32_t, std::uint32_t, std::int64_t, std::uint64_t, float,
                                  double, bool, std::string, std::vector<std::uint8_t>>;

/// Maximum number of parameters of a guest or host function.
inline constexpr std::size_t max_parameters = 32;

/// The value_type an argument or return value holds (variant index order matches value_type).
inline value_type type_of(const argument& a) noexcept { return static_cast<value_type>(a.index() + 1); }
inline value_type type_of(const return_value& r) noexcept { return static_cast<value_type>(r.index()); }

/// Human-readable name of a type, for error messages: "int32", "string", ...
const char* type_name(value_type t) noexcept;

namespace detail {

template <class T>
struct value_traits;

#define HL_VALUE_TRAITS(T, VT)                              \
    template <>                                             \
    struct value_traits<T> {                                \
        static constexpr value_type type = value_type::VT;  \
    }
HL_VALUE_TRAITS(std::int32_t, int32);
HL_VALUE_TRAITS(std::uint32_t, uint32);
HL_VALUE_TRAITS(std::int64_t, int64);
HL_VALUE_TRAITS(std::uint64_t, uint64);
HL_VALUE_TRAITS(float, float32);
HL_VALUE_TRAITS(double, float64);
HL_VALUE_TRAITS(bool, boolean);
HL_VALUE_TRAITS(std::string, string);
HL_VALUE_TRAITS(std::string_view, string);
HL_VALUE_TRAITS(std::vector<std::uint8_t>, bytes);
HL_VALUE_TRAITS(std::span<const std::uint8_t>, bytes);
HL_VALUE_TRAITS(void, void_type);
#undef HL_VALUE_TRAITS

template <class T>
concept return_type = requires { value_traits<T>::type; } && !std::same_as<T, std::string_view> &&
                      !std::same_as<T, std::span<const std::uint8_t>>;

inline constexpr const char* null_string_message = "a call argument is a null character pointer; pass a string";

/// True for a null character pointer, which no string can view.
template <class T>
bool is_null_string(const T& v) noexcept {
    if constexpr (std::is_pointer_v<std::remove_cvref_t<T>>) {
        return v == nullptr;
    } else {
        return false;
    }
}

/// Turns one C++ argument into an `argument` viewing it. Only the exact wire types are accepted
/// (plus string literals and `long long`), so a call never silently narrows or reinterprets.
/// Throws hl::error(errc::usage_error) for a null character pointer.
template <class T>
argument to_argument(const T& v) {
    using U = std::remove_cvref_t<T>;
    static_assert(!std::is_null_pointer_v<U>, "nullptr is not a call argument: pass a string");
    if (is_null_string(v)) throw error(errc::usage_error, null_string_message);
    if constexpr (std::is_same_v<U, bool>) {
        return v;
    } else if constexpr (std::is_same_v<U, long long> || std::is_same_v<U, unsigned long long>) {
        return static_cast<std::conditional_t<std::is_signed_v<U>, std::int64_t, std::uint64_t>>(v);
    } else if constexpr (std::is_same_v<U, std::int32_t> || std::is_same_v<U, std::uint32_t> ||
                         std::is_same_v<U, std::int64_t> || std::is_same_v<U, std::uint64_t> ||
                         std::is_same_v<U, float> || std::is_same_v<U, double>) {
        return v;
    } else if constexpr (std::is_convertible_v<const U&, std::string_view>) {
        return std::string_view(v);
    } else if constexpr (std::is_convertible_v<const U&, std::span<const std::uint8_t>>) {
        return std::span<const std::uint8_t>(v);
    } else {
        static_assert(sizeof(U) == 0,
                      "unsupported argument type: use int32_t, uint32_t, int64_t, uint64_t, float, double, bool, "
                      "a string type or a byte vector/span");
    }
}

template <class T>
T from_return_value(return_value&& r) {
    if constexpr (std::is_void_v<T>) {
        return;
    } else {
        return std::get<T>(std::move(r));
    }
}

}  // namespace detail
}  // namespace hl
