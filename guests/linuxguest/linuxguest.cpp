// SPDX-License-Identifier: Apache-2.0
// A guest that is an ordinary static-PIE program on glibc, using what the freestanding SDK cannot:
// exceptions, RTTI, the containers, <cmath>, <iostream>, <regex>, <random>, thread_local. Each
// function returns a value the host test checks.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <list>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hl/guest.hpp"

namespace {

std::int32_t throw_it(std::string_view message) { throw std::runtime_error(std::string(message)); }

std::int32_t catch_it() {
    try {
        throw std::out_of_range("inside");
    } catch (const std::logic_error& e) {
        return std::string_view(e.what()) == "inside" ? 42 : -1;
    }
}

struct Base {
    virtual ~Base() = default;
};
struct Derived : Base {};

std::string rtti() {
    std::unique_ptr<Base> b = std::make_unique<Derived>();
    const bool cast = dynamic_cast<Derived*>(b.get()) != nullptr;
    const Base& object = *b;  // typeid of the dynamic type, through a reference (no side effects)
    return std::string(cast ? "cast " : "no cast ") + typeid(object).name();
}

std::int32_t containers() {
    std::map<int, int> m;
    std::set<int> s;
    std::unordered_map<std::string, int> u;
    std::list<int> l;
    std::deque<int> d;
    for (int i = 0; i < 100; ++i) {
        m[i % 17] += i;
        s.insert(i * 7 % 31);
        u[std::to_string(i % 13)] += 1;
        l.push_front(i);
        d.push_back(i);
    }
    auto shared = std::make_shared<std::vector<int>>(d.begin(), d.end());
    std::stable_sort(shared->begin(), shared->end(), [](int a, int b) { return a % 10 < b % 10; });
    int sum = 0;
    for (const auto& [k, v] : m) sum += k * v;
    return sum + static_cast<int>(s.size()) + static_cast<int>(u.size()) + l.front() + (*shared)[0] +
           static_cast<int>(shared.use_count());
}

double math(double x) {
    return std::sin(x) + std::exp(x) + std::log(x + 1) + std::pow(x, 3) + std::fmod(7.5, x) + std::hypot(x, 2.0) +
           std::round(x * 10);
}

double parse_double(std::string_view text) { return std::stod(std::string(text)); }

std::string to_chars(double v) {
    char buffer[64];
    const auto r = std::to_chars(buffer, buffer + sizeof buffer, v);
    return std::string(buffer, r.ptr);
}

std::string stream() {
    std::ostringstream out;
    out << "pi=" << std::fixed << 3.14159 << " hex=" << std::hex << 255;
    return out.str();
}

std::int32_t cout_line(std::string_view text) {
    std::cout << text << std::endl;
    return static_cast<std::int32_t>(text.size());
}

std::int32_t printf_double(double v) { return std::printf("%.3f\n", v); }

bool regex_date(std::string_view text) {
    static const std::regex date(R"(\d{4}-\d{2}-\d{2})");
    return std::regex_match(std::string(text), date);
}

std::int64_t clock_seconds() {
    const auto a = std::chrono::steady_clock::now();
    const auto b = std::chrono::steady_clock::now();
    if (b < a) return -1;
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t random_value() {
    std::random_device device;
    return (static_cast<std::int64_t>(device()) << 32) | device();
}

thread_local int counter = 0;
std::int32_t thread_local_counter() { return ++counter; }

std::int32_t qsort_ints() {
    int values[] = {5, 3, 9, 1, 7};
    std::qsort(values, 5, sizeof(int), [](const void* a, const void* b) {
        return *static_cast<const int*>(a) - *static_cast<const int*>(b);
    });
    return values[0] * 10000 + values[1] * 1000 + values[2] * 100 + values[3] * 10 + values[4];
}

std::string start_thread() {
    try {
        std::thread t([] {});
        t.join();
        return "a thread started";
    } catch (const std::system_error& e) {
        return e.what();
    }
}

std::int64_t alloc(std::int64_t bytes) {
    if (bytes < 0) return -1;
    auto* p = static_cast<unsigned char*>(std::malloc(static_cast<std::size_t>(bytes)));
    // The compiler may drop a malloc whose memory nobody reads, and take it as a success (clang
    // does): the pointer escapes here, so the allocation happens.
    __asm__ volatile("" : : "r"(p) : "memory");
    if (p == nullptr) return -1;
    for (std::int64_t i = 0; i < bytes; i += 4096) p[i] = 1;
    __asm__ volatile("" : : "r"(p) : "memory");
    std::free(p);
    return bytes;
}

// One clock_gettime as a system call (a static program has no vDSO): the slow path's cost.
std::int64_t clock_gettime_once() {
    timespec t{};
    return ::syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t) == 0 ? t.tv_sec : -1;
}

// Never returns, and spends its time in system calls: a deadline or a kill must still end it.
std::int64_t syscall_spin() {
    for (;;) ::syscall(SYS_getpid);
}

// Any system call with any arguments, for the hostile tests: the host must answer every one.
std::int64_t raw_syscall(std::int64_t number, std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t d) {
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

}  // namespace

extern "C" void hl_guest_init() {
    using hl::guest::register_function;
    register_function<throw_it>("ThrowIt");
    register_function<catch_it>("CatchIt");
    register_function<rtti>("Rtti");
    register_function<containers>("Containers");
    register_function<math>("Math");
    register_function<parse_double>("ParseDouble");
    register_function<to_chars>("ToChars");
    register_function<stream>("Stream");
    register_function<cout_line>("Cout");
    register_function<printf_double>("Printf");
    register_function<regex_date>("Regex");
    register_function<clock_seconds>("Clock");
    register_function<random_value>("Random");
    register_function<thread_local_counter>("ThreadLocal");
    register_function<qsort_ints>("Qsort");
    register_function<start_thread>("Thread");
    register_function<alloc>("Alloc");
    register_function<clock_gettime_once>("ClockGettime");
    register_function<raw_syscall>("RawSyscall");
    register_function<syscall_spin>("SyscallSpin");
}
