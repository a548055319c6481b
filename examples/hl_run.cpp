// SPDX-License-Identifier: Apache-2.0
// hl-run: call a guest function from the command line.
//
//   hl-run GUEST.elf Echo --arg string:hello
//   hl-run GUEST.elf AddLocal --arg int32:40 --arg int32:2 --returns int32 --repeat 1000 --restore
#include <CLI/CLI.hpp>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "hl/hl.hpp"

namespace {

const std::map<std::string, hl::value_type> types = {
    {"void", hl::value_type::void_type}, {"int32", hl::value_type::int32},   {"uint32", hl::value_type::uint32},
    {"int64", hl::value_type::int64},    {"uint64", hl::value_type::uint64}, {"float", hl::value_type::float32},
    {"double", hl::value_type::float64}, {"bool", hl::value_type::boolean},  {"string", hl::value_type::string},
    {"bytes", hl::value_type::bytes}};

template <class T>
T number(const std::string& text, const std::string& spec) {
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) throw CLI::ValidationError("--arg " + spec, "not a valid number");
    return value;
}

// "int32:42", "string:hello", "bytes:0a0b0c" -> an owned value.
hl::return_value parse_argument(const std::string& spec) {
    const auto colon = spec.find(':');
    const auto type = types.find(spec.substr(0, colon));
    if (colon == std::string::npos || type == types.end() || type->second == hl::value_type::void_type) {
        throw CLI::ValidationError("--arg " + spec, "write TYPE:VALUE, TYPE one of int32 uint32 int64 uint64 float double bool string bytes");
    }
    const std::string text = spec.substr(colon + 1);
    switch (type->second) {
    case hl::value_type::int32: return number<std::int32_t>(text, spec);
    case hl::value_type::uint32: return number<std::uint32_t>(text, spec);
    case hl::value_type::int64: return number<std::int64_t>(text, spec);
    case hl::value_type::uint64: return number<std::uint64_t>(text, spec);
    case hl::value_type::float32: return std::stof(text);
    case hl::value_type::float64: return std::stod(text);
    case hl::value_type::boolean:
        if (text != "true" && text != "false") throw CLI::ValidationError("--arg " + spec, "a bool is true or false");
        return text == "true";
    case hl::value_type::string: return text;
    case hl::value_type::bytes: {
        if (text.size() % 2) throw CLI::ValidationError("--arg " + spec, "bytes are written as hex, two digits each");
        std::vector<std::uint8_t> bytes;
        for (std::size_t i = 0; i < text.size(); i += 2) bytes.push_back(number<std::uint8_t>(text.substr(i, 2), spec));
        return bytes;
    }
    case hl::value_type::void_type: break;
    }
    return {};
}

hl::argument view(const hl::return_value& v) {
    return std::visit(
        [](const auto& x) -> hl::argument {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string>) return std::string_view(x);
            else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) return std::span<const std::uint8_t>(x);
            else if constexpr (std::is_same_v<T, std::monostate>) return std::int32_t{0};
            else return x;
        },
        v);
}

void print(const hl::return_value& v) {
    std::visit(
        [](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) std::printf("(void)\n");
            else if constexpr (std::is_same_v<T, std::string>) std::printf("%s\n", x.c_str());
            else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) {
                for (auto b : x) std::printf("%02x", b);
                std::printf("\n");
            } else if constexpr (std::is_same_v<T, bool>) std::printf("%s\n", x ? "true" : "false");
            else if constexpr (std::is_floating_point_v<T>) std::printf("%.17g\n", static_cast<double>(x));
            else std::printf("%s\n", std::to_string(x).c_str());
        },
        v);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Call a function of a hyperlight-cpp guest in a fresh micro-VM sandbox."};
    std::string guest, function, returns = "string";
    std::vector<std::string> specs;
    int repeat = 1;
    bool restore = false;
    std::uint64_t heap = 0;
    app.add_option("guest", guest, "the guest ELF")->required()->check(CLI::ExistingFile);
    app.add_option("function", function, "the guest function to call")->required();
    app.add_option("--arg", specs, "an argument, TYPE:VALUE (repeatable; bytes in hex)");
    app.add_option("--returns", returns, "the return type")->check(CLI::IsMember({"void", "int32", "uint32", "int64",
                                                                                  "uint64", "float", "double", "bool",
                                                                                  "string", "bytes"}));
    app.add_option("--repeat", repeat, "call this many times, reporting the median time")->check(CLI::PositiveNumber);
    app.add_flag("--restore", restore, "restore a snapshot taken before the first call after every call");
    app.add_option("--heap", heap, "guest heap size in bytes (default: 128 KiB)");
    CLI11_PARSE(app, argc, argv);

    try {
        std::vector<hl::return_value> owned;
        for (const auto& s : specs) owned.push_back(parse_argument(s));
        std::vector<hl::argument> args;
        for (const auto& v : owned) args.push_back(view(v));

        hl::sandbox_config config;
        if (heap) config.heap_size = heap;
        auto sb = hl::uninitialized_sandbox::from_file(guest, config).evolve();
        const auto snap = restore ? sb.snapshot() : nullptr;
        std::vector<double> micros;
        hl::return_value result;
        for (int i = 0; i < repeat; ++i) {
            const auto start = std::chrono::steady_clock::now();
            result = restore ? sb.call_dynamic_with_restore(snap, function, types.at(returns), args)
                             : sb.call_dynamic(function, types.at(returns), args);
            micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
        }
        print(result);
        if (repeat > 1) {
            std::sort(micros.begin(), micros.end());
            std::fprintf(stderr, "%d calls%s, median %.1f us\n", repeat, restore ? " with restore" : "", micros[micros.size() / 2]);
        }
        return 0;
    } catch (const CLI::Error& e) {
        return app.exit(e);
    } catch (const hl::error& e) {
        std::fprintf(stderr, "hl-run: %s\n", e.what());
        return e.code() == hl::errc::kvm_unavailable ? 77 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hl-run: %s\n", e.what());
        return 1;
    }
}
