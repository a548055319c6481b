// SPDX-License-Identifier: Apache-2.0
// Every form of `in` on the library's ports, each of which KVM leaves half done at its exit.
#include <cstdint>

#include "hostile.hpp"

namespace {

using namespace hostile;

// Reads from the library's ports with `in`, `ins` and `rep ins`. KVM exits for each and keeps the
// instruction half done, to be finished by the next KVM_RUN with the operands it decoded now. If the
// host ever let that happen after a restore, the instruction after the `in` would run in the next
// task: here it returns a forged result for whatever that task called.
constexpr std::uint32_t canary_value = 0x5a5a'5a5a;
std::uint32_t canary = 0;                     // canary_value from initialisation on
alignas(4096) std::uint32_t landing[2 * 1024];  // two pages that `rep insd` may fill

std::int64_t in_then_forge() {
    std::uint32_t value;
    __asm__ volatile("inl %w1, %0" : "=a"(value) : "Nd"(static_cast<std::uint16_t>(HL_PORT_HOST_CALL)) : "memory");
    return forged | value;
}

void ins_over_canary() {
    void* destination = &canary;
    __asm__ volatile("insl" : "+D"(destination) : "d"(static_cast<std::uint16_t>(HL_PORT_OUTPUT)) : "memory");
}

void rep_ins(std::int64_t count) {
    void* destination = landing;
    auto n = static_cast<std::uint64_t>(count);
    __asm__ volatile("rep insl" : "+D"(destination), "+c"(n) : "d"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory");
}

// The same, backwards (RFLAGS.DF set): KVM then moves one element at a time.
void rep_ins_backwards(std::int64_t count) {
    void* destination = &landing[2 * 1024 - 1];
    auto n = static_cast<std::uint64_t>(count);
    __asm__ volatile("std\n\trep insl\n\tcld" : "+D"(destination), "+c"(n) : "d"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory");
}

// `ins` whose destination is the guest's own code: finishing it cannot write there.
void ins_into_code() {
    void* destination = reinterpret_cast<void*>(&ins_into_code);
    __asm__ volatile("insl" : "+D"(destination) : "d"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory");
}

// Ends the call with a string `out` of a success status to the done port.
void outs_done() {
    static const std::uint32_t status[4] = {HL_STATUS_OK, HL_STATUS_OK, HL_STATUS_OK, HL_STATUS_OK};
    const void* source = status;
    std::uint64_t n = 4;
    __asm__ volatile("rep outsl" : "+S"(source), "+c"(n) : "d"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory");
}

std::int64_t identity(std::int64_t x) { return x; }
std::int64_t read_canary() { return canary; }
std::int64_t landing_sum() {
    std::int64_t sum = 0;
    for (const auto v : landing) sum += v;
    return sum;
}


// `in` of each width from any port; forged result if it ever continues.
std::int64_t in_port(std::int64_t port, std::int64_t width) {
    const auto p = static_cast<std::uint16_t>(port);
    std::uint32_t value = 0;
    if (width == 1) {
        std::uint8_t v;
        __asm__ volatile("inb %w1, %0" : "=a"(v) : "Nd"(p) : "memory");
        value = v;
    } else if (width == 2) {
        std::uint16_t v;
        __asm__ volatile("inw %w1, %0" : "=a"(v) : "Nd"(p) : "memory");
        value = v;
    } else {
        __asm__ volatile("inl %w1, %0" : "=a"(value) : "Nd"(p) : "memory");
    }
    return forged | value;
}

// A host call, then an `in`.
std::int64_t host_call_then_in() {
    auto r = hl::guest::call_host<std::int64_t>("Nested");
    std::uint32_t value;
    __asm__ volatile("inl %w1, %0" : "=a"(value) : "Nd"(static_cast<std::uint16_t>(HL_PORT_HOST_CALL)) : "memory");
    return forged | value | (r ? *r : 0);
}
std::int64_t call_nested() {
    auto r = hl::guest::call_host<std::int64_t>("Nested");
    return r ? *r : -1;
}

// addr32 rep insl (67 f3 6d): the destination is EDI and the count ECX; RDI's high half, set here,
// is ignored, so the write lands in `landing`.
void addr32_rep_ins(std::int64_t count) {
    std::uint64_t d = reinterpret_cast<std::uint64_t>(landing) | (std::uint64_t{1} << 32);
    auto n = static_cast<std::uint64_t>(count) | (std::uint64_t{1} << 40);
    __asm__ volatile(".byte 0x67, 0xf3, 0x6d" : "+D"(d), "+c"(n) : "d"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory");
}

}  // namespace

void hostile::register_port_attacks() {
    canary = canary_value;
    using hl::guest::register_function;
    register_function<in_then_forge>("InThenForge");
    register_function<ins_over_canary>("InsOverCanary");
    register_function<rep_ins>("RepIns");
    register_function<rep_ins_backwards>("RepInsBackwards");
    register_function<ins_into_code>("InsIntoCode");
    register_function<outs_done>("OutsDone");
    register_function<identity>("Identity");
    register_function<read_canary>("ReadCanary");
    register_function<landing_sum>("LandingSum");
    register_function<in_port>("InPort");
    register_function<host_call_then_in>("HostCallThenIn");
    register_function<call_nested>("CallNested");
    register_function<addr32_rep_ins>("Addr32RepIns");
}
