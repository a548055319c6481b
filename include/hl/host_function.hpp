// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hl/value.hpp"

namespace hl {

/// A host function with its signature, type-erased. Built by register_host_function() from any
/// callable whose signature can be deduced.
struct host_function {
    std::vector<value_type> parameters;
    value_type result = value_type::void_type;
    /// Called with arguments that match `parameters` (the sandbox checks before calling).
    std::function<return_value(std::span<const argument>)> invoke;

    /// What an asynchronous form delivers: the result, or the message of the failure.
    struct outcome {
        return_value value;
        std::optional<std::string> failure;
    };
    /// Optional: the asynchronous form, for a scheduler that waits without blocking its thread
    /// (hl::guest_call hands it to the scheduler instead of calling `invoke`). It starts the work
    /// and returns at once; `done` is called exactly once, from any thread, with the outcome. The
    /// arguments stay valid until then. The function it returns, if not empty, asks the work to
    /// stop early (`done` is still called). A synchronous call() always uses `invoke`, which
    /// registration requires even when this is set.
    std::function<std::function<void()>(std::span<const argument>, std::function<void(outcome)> done)> start_async;
};

namespace detail {

template <class T>
struct signature_of : signature_of<decltype(&T::operator())> {};
template <class R, class... A>
struct signature_of<R (*)(A...)> {
    using result = R;
    using params = std::tuple<A...>;
};
template <class R, class... A>
struct signature_of<R(A...)> : signature_of<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...)> : signature_of<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...) const> : signature_of<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...) noexcept> : signature_of<R (*)(A...)> {};
template <class C, class R, class... A>
struct signature_of<R (C::*)(A...) const noexcept> : signature_of<R (*)(A...)> {};
template <class R, class... A>
struct signature_of<R (*)(A...) noexcept> : signature_of<R (*)(A...)> {};

/// The C++ types a host function may take, and how each is made from an argument.
template <class T>
T from_argument(const argument& a) {
    using U = std::remove_cvref_t<T>;
    if constexpr (std::is_same_v<U, std::string>) {
        return std::string(std::get<std::string_view>(a));
    } else if constexpr (std::is_same_v<U, std::vector<std::uint8_t>>) {
        const auto s = std::get<std::span<const std::uint8_t>>(a);
        return std::vector<std::uint8_t>(s.begin(), s.end());
    } else {
        return std::get<U>(a);
    }
}

template <class T>
return_value to_return_value(T&& v) {
    return return_value(std::forward<T>(v));
}

template <class R, class F, class... A, std::size_t... I>
return_value invoke_with(F& f, std::span<const argument> args, std::index_sequence<I...>) {
    if constexpr (std::is_void_v<R>) {
        f(from_argument<A>(args[I])...);
        return std::monostate{};
    } else {
        return to_return_value(f(from_argument<A>(args[I])...));
    }
}

template <class R, class F, class... A>
host_function make_host_function_from(F f, std::tuple<A...>*) {
    static_assert(sizeof...(A) <= max_parameters, "host functions take at most 32 parameters");
    static_assert((requires { value_traits<std::remove_cvref_t<A>>::type; } && ...),
                  "unsupported host function parameter type: use int32_t, uint32_t, int64_t, uint64_t, float, "
                  "double, bool, std::string, std::string_view, std::vector<uint8_t> or std::span<const uint8_t>");
    static_assert(return_type<R>, "unsupported host function return type");
    host_function h;
    h.parameters = {value_traits<std::remove_cvref_t<A>>::type...};
    h.result = value_traits<R>::type;
    h.invoke = [f = std::move(f)](std::span<const argument> args) mutable {
        return invoke_with<R, F, A...>(f, args, std::index_sequence_for<A...>{});
    };
    return h;
}

/// A null function pointer or an empty std::function makes an empty host_function, which
/// registration refuses (errc::usage_error) rather than crash the host when the guest calls it.
template <class F>
host_function make_host_function(F&& f) {
    using D = std::decay_t<F>;
    using sig = signature_of<D>;
    if constexpr (std::is_pointer_v<std::remove_reference_t<F>>) {  // not a function named directly
        if (f == nullptr) return {};
    } else if constexpr (requires(const D& g) {
                             typename D::result_type;
                             static_cast<bool>(g);
                         }) {
        if (!static_cast<bool>(f)) return {};
    }
    return make_host_function_from<typename sig::result>(D(std::forward<F>(f)),
                                                         static_cast<typename sig::params*>(nullptr));
}

}  // namespace detail
}  // namespace hl
