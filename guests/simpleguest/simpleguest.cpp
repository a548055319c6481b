// SPDX-License-Identifier: Apache-2.0
// The C++ test guest: echoes of every type, small workloads, and one function per kind of fault.
#undef NDEBUG  // AssertFalse needs assert() in every build type
#include <cassert>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hl/guest.hpp"

// Outside the anonymous namespace: with the whole class hierarchy visible, g++ would devirtualize the
// call that PureVirtualCall needs to go through the vtable.
namespace simpleguest {
struct shape;
volatile int sides_seen;
[[gnu::noinline]] void count_sides(shape* s);
struct shape {
    shape() { count_sides(this); }  // during construction the vtable is shape's: a pure virtual call
    virtual ~shape() = default;
    virtual int sides() = 0;
};
void count_sides(shape* s) { sides_seen = s->sides(); }
struct square : shape {
    int sides() override { return 4; }
};
}  // namespace simpleguest

namespace {

std::string echo(std::string_view s) { return std::string(s); }
std::int32_t echo_int32(std::int32_t v) { return v; }
std::uint32_t echo_uint32(std::uint32_t v) { return v; }
std::int64_t echo_int64(std::int64_t v) { return v; }
std::uint64_t echo_uint64(std::uint64_t v) { return v; }
float echo_float(float v) { return v; }
double echo_double(double v) { return v; }
bool echo_bool(bool v) { return v; }
std::vector<std::uint8_t> echo_bytes(std::span<const std::uint8_t> v) { return {v.begin(), v.end()}; }
// Adds through the host, as Hyperlight's simpleguest does: needs the host function HostAdd.
hl::guest::result<std::int32_t> add(std::int32_t a, std::int32_t b) {
    auto sum = hl::guest::call_host<std::int32_t>("HostAdd", a, b);
    if (!sum) return sum.error();
    return *sum;
}

std::int32_t add_local(std::int32_t a, std::int32_t b) { return a + b; }

std::int32_t print_output(std::string_view text) { return std::printf("%.*s", static_cast<int>(text.size()), text.data()); }

void log_message(std::int32_t level, std::string_view message) {
    HL_LOG(static_cast<hl_log_level>(level), "%.*s", static_cast<int>(message.size()), message.data());
}

// Calls HostAdd n times; returns the sum of the results.
hl::guest::result<std::int64_t> call_host_many_times(std::int32_t n) {
    std::int64_t total = 0;
    for (std::int32_t i = 0; i < n; ++i) {
        auto r = hl::guest::call_host<std::int32_t>("HostAdd", i, 1);
        if (!r) return r.error();
        total += *r;
    }
    return total;
}

// Calls the host function `name`(a, b) -> int32 and passes any error on unchanged.
hl::guest::result<std::int32_t> call_host(std::string name, std::int32_t a, std::int32_t b) {
    auto r = hl::guest::call_host<std::int32_t>(name.c_str(), a, b);
    if (!r) return r.error();
    return *r;
}

// Calls the host function `name`(a, b) -> int32 and handles its error: returns the message.
std::string handle_host_error(std::string name) {
    auto r = hl::guest::call_host<std::int32_t>(name.c_str(), 1, 2);
    return r ? "no error" : "handled: " + r.error().message;
}

// Passes its argument through the host function Host<Type> and returns what came back.
template <class T>
hl::guest::result<T> through_host(const char* host_function, T value) {
    auto r = hl::guest::call_host<T>(host_function, value);
    if (!r) return r.error();
    return std::move(*r);
}
hl::guest::result<std::string> string_through_host(std::string v) { return through_host("HostString", std::move(v)); }
hl::guest::result<std::vector<std::uint8_t>> bytes_through_host(std::vector<std::uint8_t> v) {
    return through_host("HostBytes", std::move(v));
}
hl::guest::result<double> double_through_host(double v) { return through_host("HostDouble", v); }
hl::guest::result<float> float_through_host(float v) { return through_host("HostFloat", v); }
hl::guest::result<std::uint64_t> uint64_through_host(std::uint64_t v) { return through_host("HostUInt64", v); }
hl::guest::result<bool> bool_through_host(bool v) { return through_host("HostBool", v); }
hl::guest::result<void> void_through_host() { return hl::guest::call_host<void>("HostVoid"); }

// Wait on the host (an async host function awaiting a timer); returns the milliseconds asked for.
hl::guest::result<std::uint32_t> sleep_on_host(std::uint32_t milliseconds) {
    auto r = hl::guest::call_host<void>("HostSleep", milliseconds);
    if (!r) return r.error();
    return milliseconds;
}

// Read a file through the host (an async host function using io_uring).
hl::guest::result<std::vector<std::uint8_t>> read_host_file(std::string path) {
    return hl::guest::call_host<std::vector<std::uint8_t>>("HostReadFile", path);
}

void abort_with(std::int32_t code, std::string message) { hl_abort(static_cast<std::uint32_t>(code), message.c_str()); }

void print_then_abort(std::string text) {
    std::printf("%s", text.c_str());
    hl_abort(1, "after printing");
}

hl::guest::result<void> return_guest_error(std::int32_t code, std::string message) {
    return hl::guest::error{code, std::move(message)};
}

// Writes `count` log records (or printed lines) of `length` characters each.
void log_lots(std::int32_t count, std::int32_t length) {
    const std::string text(static_cast<std::size_t>(length), 'L');
    for (std::int32_t i = 0; i < count; ++i) HL_INFO("%s", text.c_str());
}

void print_lots(std::int32_t count, std::int32_t length) {
    const std::string text(static_cast<std::size_t>(length), 'P');
    for (std::int32_t i = 0; i < count; ++i) std::printf("%s\n", text.c_str());
}

// Fails an assertion (the SDK turns it into an abort).
void assert_false(std::int32_t value) { assert(value == 12345); }

std::int32_t pure_virtual_call() { return simpleguest::square().sides(); }

std::int64_t allocate_too_much(std::int64_t bytes) {
    auto* p = new std::uint8_t[static_cast<std::size_t>(bytes)];
    __asm__ volatile("" : "+r"(p) : : "memory");  // keep the allocation from being optimized away
    p[0] = 1;
    const std::int64_t r = p[0];
    delete[] p;
    return r;
}

// Hyperlight's sample workload: 24 KiB in, 8 KiB out.
std::vector<std::uint8_t> in24k_out8k(std::span<const std::uint8_t> input) {
    std::vector<std::uint8_t> out(8 * 1024);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = input.empty() ? 0 : input[i % input.size()];
    return out;
}

void large_parameters(std::span<const std::uint8_t> bytes, std::string_view text) {
    volatile std::size_t sink = bytes.size() + text.size();
    (void)sink;
}

std::string format_all(std::int32_t a, std::uint32_t b, std::int64_t c, std::uint64_t d, float e, double f, bool g,
                       std::string_view h, std::span<const std::uint8_t> i) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%d %u %lld %llu %.2f %.3f %s %.*s %zu", a, b, static_cast<long long>(c),
                  static_cast<unsigned long long>(d), static_cast<double>(e), f, g ? "true" : "false",
                  static_cast<int>(h.size()), h.data(), i.size());
    return buf;
}

std::int64_t sum32(std::int32_t a0, std::int32_t a1, std::int32_t a2, std::int32_t a3, std::int32_t a4,
                   std::int32_t a5, std::int32_t a6, std::int32_t a7, std::int32_t a8, std::int32_t a9,
                   std::int32_t a10, std::int32_t a11, std::int32_t a12, std::int32_t a13, std::int32_t a14,
                   std::int32_t a15, std::int32_t a16, std::int32_t a17, std::int32_t a18, std::int32_t a19,
                   std::int32_t a20, std::int32_t a21, std::int32_t a22, std::int32_t a23, std::int32_t a24,
                   std::int32_t a25, std::int32_t a26, std::int32_t a27, std::int32_t a28, std::int32_t a29,
                   std::int32_t a30, std::int32_t a31) {
    const std::int32_t all[] = {a0,  a1,  a2,  a3,  a4,  a5,  a6,  a7,  a8,  a9,  a10, a11, a12, a13, a14, a15,
                                a16, a17, a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31};
    std::int64_t sum = 0;
    for (std::size_t i = 0; i < std::size(all); ++i) sum += static_cast<std::int64_t>(i + 1) * all[i];
    return sum;
}

std::int32_t counter = 0;
std::int32_t increment_counter() { return ++counter; }

// Allocates and frees `n` blocks of varying sizes; returns how many bytes were allocated in total.
std::int64_t heap_churn(std::int32_t n) {
    std::vector<std::vector<std::uint8_t>> live;
    std::int64_t total = 0;
    for (std::int32_t i = 0; i < n; ++i) {
        live.emplace_back(static_cast<std::size_t>(16 + (i * 37) % 2048), static_cast<std::uint8_t>(i));
        total += static_cast<std::int64_t>(live.back().size());
        if (live.size() > 64) live.erase(live.begin());
    }
    return total;
}

// State that must not survive a restore: a heap-allocated secret.
std::string* secret = nullptr;
void store_secret(std::string value) {
    delete secret;
    secret = new std::string(std::move(value));
}
std::string get_secret() { return secret ? *secret : std::string(); }

bool contains(const unsigned char* data, std::size_t size, std::string_view needle) {
    return std::string_view(reinterpret_cast<const char*>(data), size).find(needle) != std::string_view::npos;
}

// Whether the output buffer still holds `needle` from an earlier call (this call has written nothing yet).
bool output_buffer_contains(std::string_view needle) {
    const hl_peb* peb = hl_get_peb();
    return contains(reinterpret_cast<const unsigned char*>(peb->output_addr), peb->output_size, needle);
}

// Whether the input buffer, past this call's own message, still holds `needle` from an earlier call.
bool input_buffer_tail_contains(std::string_view needle) {
    const hl_peb* peb = hl_get_peb();
    const auto* base = reinterpret_cast<const unsigned char*>(peb->input_addr);
    std::uint64_t used;
    std::memcpy(&used, base, sizeof used);
    const std::uint64_t start = HL_BUFFER_HEADER_SIZE + used;
    return contains(base + start, peb->input_size - start, needle);
}

// FPU/SSE state that lives in the vCPU, not in memory: xmm15 and MXCSR's rounding mode.
void set_fpu_state(std::uint64_t bits) {
    std::uint32_t mxcsr = 0x1f80 | (3u << 13);  // round toward zero
    __asm__ volatile("movq %0, %%xmm15\n\tldmxcsr %1" : : "r"(bits), "m"(mxcsr) : "xmm15");
}
std::string get_fpu_state() {
    std::uint64_t bits;
    std::uint32_t mxcsr;
    __asm__ volatile("movq %%xmm15, %0\n\tstmxcsr %1" : "=r"(bits), "=m"(mxcsr));
    char text[64];
    std::snprintf(text, sizeof text, "xmm15=%llx mxcsr=%x", static_cast<unsigned long long>(bits), mxcsr);
    return text;
}

// Writes `pages` distinct heap pages (for restore measurements); returns how many it wrote.
std::int32_t dirty_pages(std::int32_t pages) {
    static std::uint8_t* area = nullptr;
    static std::int32_t area_pages = 0;
    if (area_pages < pages) {
        ::operator delete[](area, std::align_val_t(4096));
        area = static_cast<std::uint8_t*>(::operator new[](static_cast<std::size_t>(pages) * 4096, std::align_val_t(4096)));
        area_pages = pages;
    }
    for (std::int32_t i = 0; i < pages; ++i) area[static_cast<std::size_t>(i) * 4096] = static_cast<std::uint8_t>(i + 1);
    return pages;
}

// Busy-waits `n` iterations, then returns n.
std::uint64_t loop_for(std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) __asm__ volatile("pause");
    return n;
}

void spin() {
    for (;;) __asm__ volatile("pause");
}

// Aborts through std::__throw_out_of_range_fmt, whose message libstdc++ formats from arguments.
std::int32_t vector_at(std::int32_t index) {
    const std::vector<std::int32_t> v{1, 2, 3};
    return v.at(static_cast<std::size_t>(index));
}

std::int32_t read_null() { return *static_cast<volatile std::int32_t*>(nullptr); }

void write_null() { *static_cast<volatile std::int32_t*>(nullptr) = 1; }

void invalid_opcode() { __asm__ volatile("ud2"); }

// A null write one call down, in functions a debugger must name from a core file: not inlined, and
// the pointer passes through an empty asm so that no compiler sees it is null (GCC and clang would
// otherwise specialise or replace the store); the asm after the call keeps it from becoming a jump.
[[gnu::noinline]] void write_through(volatile std::int32_t* p) { *p = 1; }
[[gnu::noinline]] void fault_in_callee() {
    volatile std::int32_t* p = nullptr;
    __asm__ volatile("" : "+r"(p));
    write_through(p);
    __asm__ volatile("");
}

std::int32_t divide_by_zero(std::int32_t a, std::int32_t b) {
    std::int32_t result;
    __asm__ volatile("cltd\n\tidivl %2" : "=a"(result) : "a"(a), "r"(b) : "rdx", "cc");
    return result;
}

std::int32_t recurse(std::int32_t depth) {
    volatile char frame[512];
    frame[0] = static_cast<char>(depth);
    if (depth < 0) return 0;  // never true; keeps the recursion from being provably infinite
    return recurse(depth + 1) + frame[0];
}
std::int32_t stack_overflow() { return recurse(0); }

void write_to_code() { *reinterpret_cast<volatile std::uint8_t*>(reinterpret_cast<std::uintptr_t>(&spin)) = 0xc3; }

void execute_heap() {
    auto* code = new std::uint8_t[16]{0xc3};
    reinterpret_cast<void (*)()>(code)();
}

}  // namespace

extern "C" void hl_guest_init() {
    using hl::guest::register_function;
    register_function<echo>("Echo");
    register_function<echo>("EchoString");
    register_function<echo_int32>("EchoInt32");
    register_function<echo_uint32>("EchoUInt32");
    register_function<echo_int64>("EchoInt64");
    register_function<echo_uint64>("EchoUInt64");
    register_function<echo_float>("EchoFloat");
    register_function<echo_double>("EchoDouble");
    register_function<echo_bool>("EchoBool");
    register_function<echo_bytes>("EchoBytes");
    register_function<add>("Add");
    register_function<add_local>("AddLocal");
    register_function<print_output>("PrintOutput");
    register_function<log_message>("LogMessage");
    register_function<call_host_many_times>("CallHostManyTimes");
    register_function<call_host>("CallHost");
    register_function<handle_host_error>("HandleHostError");
    register_function<abort_with>("Abort");
    register_function<sleep_on_host>("SleepOnHost");
    register_function<read_host_file>("ReadHostFile");
    register_function<print_then_abort>("PrintThenAbort");
    register_function<string_through_host>("StringThroughHost");
    register_function<bytes_through_host>("BytesThroughHost");
    register_function<double_through_host>("DoubleThroughHost");
    register_function<float_through_host>("FloatThroughHost");
    register_function<uint64_through_host>("UInt64ThroughHost");
    register_function<bool_through_host>("BoolThroughHost");
    register_function<void_through_host>("VoidThroughHost");
    register_function<return_guest_error>("ReturnGuestError");
    register_function<log_lots>("LogLots");
    register_function<print_lots>("PrintLots");
    register_function<assert_false>("AssertFalse");
    register_function<pure_virtual_call>("PureVirtualCall");
    register_function<allocate_too_much>("AllocateTooMuch");
    register_function<in24k_out8k>("24K_in_8K_out");
    register_function<large_parameters>("LargeParameters");
    register_function<format_all>("FormatAll");
    register_function<sum32>("Sum32");
    register_function<increment_counter>("IncrementCounter");
    register_function<heap_churn>("HeapChurn");
    register_function<spin>("Spin");
    register_function<loop_for>("LoopFor");
    register_function<store_secret>("StoreSecret");
    register_function<get_secret>("GetSecret");
    register_function<output_buffer_contains>("OutputBufferContains");
    register_function<input_buffer_tail_contains>("InputBufferTailContains");
    register_function<set_fpu_state>("SetFpuState");
    register_function<get_fpu_state>("GetFpuState");
    register_function<dirty_pages>("DirtyPages");
    register_function<read_null>("ReadNull");
    register_function<write_null>("WriteNull");
    register_function<invalid_opcode>("InvalidOpcode");
    register_function<fault_in_callee>("FaultInCallee");
    register_function<divide_by_zero>("DivideByZero");
    register_function<stack_overflow>("StackOverflow");
    register_function<write_to_code>("WriteToCode");
    register_function<execute_heap>("ExecuteHeap");
    register_function<vector_at>("VectorAt");
}
