// SPDX-License-Identifier: Apache-2.0
// What the fuzz targets share: a failed invariant aborts (libFuzzer keeps the input as a crash),
// and values compare bit for bit (a NaN from the guest must survive a round trip as itself).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "hl/error.hpp"

namespace hl::fuzz {

[[noreturn]] inline void fail(const char* what, std::string_view detail = "") {
    const std::string text(detail);
    std::fprintf(stderr, "fuzz invariant broken: %s %s\n", what, text.c_str());
    std::abort();
}

inline void expect(bool ok, const char* what, std::string_view detail = "") {
    if (!ok) fail(what, detail);
}

/// The only way a decoder may refuse guest bytes: hl::error with `code`.
inline void expect_code(const hl::error& e, hl::errc code) {
    if (e.code() != make_error_code(code)) fail("unexpected error code:", e.what());
}

template <class A, class B>
bool same_bits(const A& a, const B& b) {
    if constexpr (std::is_floating_point_v<A> && std::is_same_v<A, B>) {
        return std::memcmp(&a, &b, sizeof a) == 0;
    } else if constexpr (requires { a.size(); b.size(); a.data(); b.data(); }) {
        return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
    } else if constexpr (std::is_same_v<A, B>) {
        return a == b;
    } else {
        return false;
    }
}

/// Same alternative, same bits, for argument and return_value alike.
template <class V>
bool same_value(const V& a, const V& b) {
    if (a.index() != b.index()) return false;
    return std::visit([&](const auto& x) { return same_bits(x, std::get<std::decay_t<decltype(x)>>(b)); }, a);
}

/// True when `part` lies wholly inside `whole`: views the decoder returns must point into the message.
inline bool inside(std::string_view part, std::span<const std::byte> whole) {
    if (part.empty()) return true;
    const auto* p = reinterpret_cast<const std::byte*>(part.data());
    return p >= whole.data() && p + part.size() <= whole.data() + whole.size();
}

}  // namespace hl::fuzz
