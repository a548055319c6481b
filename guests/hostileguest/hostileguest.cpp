// SPDX-License-Identifier: Apache-2.0
// A guest that breaks the protocol on purpose, the way a compromised guest could: the host must end
// each of these calls with a clear error and never trust what it finds in guest memory.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "hl/abi/hl_generated.h"
#include "hl/guest.hpp"

namespace {

void out32(std::uint16_t port, std::uint32_t value) { __asm__ volatile("outl %0, %w1" : : "a"(value), "Nd"(port) : "memory"); }

unsigned char* output() { return reinterpret_cast<unsigned char*>(hl_get_peb()->output_addr); }

void set_output(std::uint64_t size, unsigned char fill) {
    std::memcpy(output(), &size, sizeof size);
    const std::uint64_t capacity = hl_get_peb()->output_size - HL_BUFFER_HEADER_SIZE;
    std::memset(output() + HL_BUFFER_HEADER_SIZE, fill, size < capacity ? size : capacity);
}

// A host call whose size claims more than the output buffer holds.
void host_call_too_big() {
    set_output(hl_get_peb()->output_size, 0);
    out32(HL_PORT_HOST_CALL, 0);
}

// A host call that is not a FlatBuffer at all.
void host_call_garbage() {
    set_output(64, 0xab);
    out32(HL_PORT_HOST_CALL, 0);
}

// A host call whose root offset points far outside the message.
void host_call_offsets_outside() {
    set_output(16, 0);
    const std::uint32_t root = 0x7fff'fff0;
    std::memcpy(output() + HL_BUFFER_HEADER_SIZE, &root, sizeof root);
    out32(HL_PORT_HOST_CALL, 0);
}

// HostAdd with two strings instead of two int32s; returns the host's error message.
std::string wrong_types_to_host() {
    auto r = hl::guest::call_host<std::int32_t>("HostAdd", "one", "two");
    return r ? "no error" : r.error().message;
}

// An abort message far longer than any buffer.
void huge_abort() {
    std::string message(1 << 20, 'A');
    hl_abort(7, message.c_str());
}

// Finishes the call itself with a result size larger than the output buffer.
void result_too_big() {
    set_output(~0ull, 0);
    out32(HL_PORT_DONE, HL_STATUS_OK);
}

// Finishes the call itself with bytes that are not a FunctionCallResult.
void result_garbage() {
    set_output(32, 0x5a);
    out32(HL_PORT_DONE, HL_STATUS_OK);
}

void unknown_port() { out32(0x101, 1); }

void unknown_output_kind() {
    set_output(4, 'x');
    out32(HL_PORT_OUTPUT, 9);
}

void log_garbage() {
    set_output(16, 0xee);
    out32(HL_PORT_OUTPUT, HL_OUTPUT_LOG);
}

std::int32_t read_port() {
    std::uint32_t value;
    __asm__ volatile("inl %w1, %0" : "=a"(value) : "Nd"(static_cast<std::uint16_t>(HL_PORT_DONE)));
    return static_cast<std::int32_t>(value);
}

void forbidden_port() { out32(0x80, 1); }

void done_with_failure() { out32(HL_PORT_DONE, 5); }

// Writes over the whole output buffer, then returns normally: the SDK's result must still arrive.
std::int32_t scribble_then_return() {
    set_output(hl_get_peb()->output_size - HL_BUFFER_HEADER_SIZE, 0xff);
    return 42;
}

// Sends a trace-level log record straight to the port, skipping the SDK's level filter.
void log_below_level() {
    flatbuffers::FlatBufferBuilder b(128);
    b.Finish(hl::fb::CreateLogRecord(b, hl::fb::LogLevel::Trace, b.CreateString("sneaky"), b.CreateString("x.c"), 1));
    const std::uint64_t size = b.GetSize();
    std::memcpy(output(), &size, sizeof size);
    std::memcpy(output() + HL_BUFFER_HEADER_SIZE, b.GetBufferPointer(), size);
    out32(HL_PORT_OUTPUT, HL_OUTPUT_LOG);
}

// Reads from the library's ports with `in`, `ins` and `rep ins`. KVM exits for each and keeps the
// instruction half done, to be finished by the next KVM_RUN with the operands it decoded now. If the
// host ever let that happen after a restore, the instruction after the `in` would run in the next
// task: here it returns a forged result for whatever that task called.
constexpr std::int64_t forged = static_cast<std::int64_t>(0xf0a6ed0300000000ull);
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

// CPU exceptions a guest can raise on purpose, each of which the host must name truthfully.

void breakpoint() { __asm__ volatile("int3\n\tnop"); }

// An int3 right before an out the guest may use: the out did not run, and is not to blame.
void breakpoint_before_allowed_out() {
    __asm__ volatile("int3\n\toutl %0, %w1" : : "a"(HL_OUTPUT_PRINT), "Nd"(static_cast<std::uint16_t>(HL_PORT_OUTPUT)));
}

// int 3 in its two-byte form (cd 03), which the CPU also reports after the instruction.
void breakpoint_long_form() { __asm__ volatile(".byte 0xcd, 0x03\n\tnop"); }

void icebp() { __asm__ volatile(".byte 0xf1\n\tnop"); }

// Sets RFLAGS.TF: the CPU traps after the instruction following popfq.
void single_step() { __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tnop\n\tnop" : : : "memory", "cc"); }

// popfq setting TF does not trap itself, so the ud2 right after it faults before any trap.
void step_into_ud2() { __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tud2" : : : "memory", "cc"); }

// Single-steps onto an allowed out: the trap comes after the nop, with rip at the out, not yet run.
void single_step_onto_out() {
    set_output(1, 'x');
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tnop\n\toutl %0, %w1\n\tnop"
                     : : "a"(HL_OUTPUT_PRINT), "Nd"(static_cast<std::uint16_t>(HL_PORT_OUTPUT)) : "memory", "cc");
}

// getpid, the way a libc would ask for it.
std::int64_t system_call() {
    std::int64_t ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(39) : "rcx", "r11", "memory");
    return ret;
}

void sysenter() { __asm__ volatile("sysenter" : : "a"(39) : "rcx", "r11", "memory"); }

// rep outsb to an allowed port from memory the guest cannot read.
void outs_from_unmapped() {
    __asm__ volatile("rep outsb" : : "S"(0x7f0000000000ull), "c"(4), "d"(HL_PORT_OUTPUT) : "memory");
}

// Sets RFLAGS.AC and loads from a misaligned address. The VM leaves CR0.AM clear, so hardware KVM
// raises no #AC; PVM runs guest code under the host's CR0, where AM is set, and raises it.
std::int64_t misaligned_with_ac() {
    static unsigned char buffer[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    std::int64_t value;
    __asm__ volatile("pushfq\n\torq $0x40000, (%%rsp)\n\tpopfq\n\tmovq 1(%1), %0\n\t"
                     "pushfq\n\tandq $~0x40000, (%%rsp)\n\tpopfq"
                     : "=r"(value) : "r"(buffer) : "memory", "cc");
    return value;
}

void vmcall() { __asm__ volatile("vmcall" : : "a"(0) : "memory"); }

std::int64_t vmmcall() {
    std::int64_t ret;
    __asm__ volatile("vmmcall" : "=a"(ret) : "a"(0) : "memory");
    return ret;
}

// movdir64b (66 0f 38 f8 /r), which capstone 4 cannot decode.
void movdir64b() {
    __asm__ volatile(".byte 0x66, 0x0f, 0x38, 0xf8, 0x06" : : "S"(output()), "a"(output() + 64) : "memory");
}

// ldtilecfg [rax] (AMX, VEX c4 e2 78 49 00), which capstone 4 cannot decode.
void ldtilecfg() { __asm__ volatile(".byte 0xc4, 0xe2, 0x78, 0x49, 0x00" : : "a"(output()) : "memory"); }

// Access memory through fs and gs after pointing their bases at unmapped memory. PVM runs
// wrfsbase at CPL3 although the guest's CR4.FSGSBASE is clear; hardware KVM raises #UD.
std::int64_t read_through_fs_base() {
    std::int64_t value;
    __asm__ volatile("wrfsbase %1\n\tmovq %%fs:0x10, %0" : "=r"(value) : "r"(0x7f0000000000ull) : "memory");
    return value;
}

std::int64_t write_through_gs_base() {
    __asm__ volatile("wrgsbase %0\n\tmovq $1, %%gs:0x20" : : "r"(0x7f0000100000ull) : "memory");
    return 0;
}

// Attacks on what restore() must put back besides memory and general registers: CPU state a task
// can leave behind (FPU, vector, segment bases, trap and interrupt-shadow state), every `in` form
// on every library port, string `in` that runs into memory it cannot write, and a page pattern that
// exercises the dirty log's hot-page tracking. tests/integration/attack_test.cpp drives them.

// x87, SSE and MXCSR state: a secret in xmm15 and on the x87 stack, odd rounding modes.
void set_fpu_state(std::int64_t secret) {
    const std::uint32_t mxcsr = 0x1f80 | 0x6000 | 0x8000 | 0x40;  // round toward zero, FTZ, DAZ
    const std::uint16_t fcw = 0x0f7f;                             // round toward zero, 64-bit precision
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1\n\tmovq %2, %%xmm15\n\tfildll %3\n\tfildll %3"
                     : : "m"(mxcsr), "m"(fcw), "r"(secret), "m"(secret) : "xmm15", "memory");
}
std::int64_t read_mxcsr() {
    std::uint32_t v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}
std::int64_t read_fcw() {
    std::uint16_t v;
    __asm__ volatile("fnstcw %0" : "=m"(v));
    return v;
}
std::int64_t read_fsw() {
    std::uint16_t v;
    __asm__ volatile("fnstsw %0" : "=m"(v));
    return v;
}
std::int64_t read_xmm15() {
    std::int64_t v;
    __asm__ volatile("movq %%xmm15, %0" : "=r"(v));
    return v;
}

// AVX-512 state. The guest's CR4.OSXSAVE is clear, so hardware KVM raises #UD here; PVM runs guest
// code under the host's CR4 and XCR0, where these instructions work.
void set_avx512_state(std::int64_t secret) {
    __asm__ volatile("vpbroadcastq %0, %%zmm31\n\tkmovw %k0, %%k7\n\tvpbroadcastq %0, %%ymm14"
                     : : "r"(secret) : "xmm14", "memory");
}
std::int64_t read_zmm31_high() {  // the top quadword: beyond what SSE and AVX state hold
    std::int64_t v;
    __asm__ volatile("vextracti32x4 $3, %%zmm31, %%xmm0\n\tvpextrq $1, %%xmm0, %0" : "=r"(v) : : "xmm0");
    return v;
}
std::int64_t read_k7() {
    std::uint32_t v;
    __asm__ volatile("kmovw %%k7, %0" : "=r"(v));
    return v;
}
std::int64_t read_ymm14_high() {
    std::int64_t v;
    __asm__ volatile("vextracti128 $1, %%ymm14, %%xmm13\n\tvmovq %%xmm13, %0" : "=r"(v) : : "xmm13");
    return v;
}

// FS and GS bases (wrfsbase works at CPL3 under PVM; see read_through_fs_base).
void set_segment_bases(std::int64_t value) {
    __asm__ volatile("wrfsbase %0\n\twrgsbase %0" : : "r"(value) : "memory");
}
std::int64_t read_fs_base() {
    std::int64_t v;
    __asm__ volatile("rdfsbase %0" : "=r"(v));
    return v;
}
std::int64_t read_gs_base() {
    std::int64_t v;
    __asm__ volatile("rdgsbase %0" : "=r"(v));
    return v;
}

// Ends the call with RFLAGS.TF set: the single-step trap belongs after the `out`, which the host
// takes as the end of the call.
void step_over_done() {
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\toutl %0, %w1"
                     : : "a"(HL_STATUS_OK), "Nd"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory", "cc");
}
// Ends the call inside a MOV SS interrupt shadow.
void done_in_mov_ss_shadow() {
    __asm__ volatile("movw %%ss, %%cx\n\tmovw %%cx, %%ss\n\toutl %0, %w1"
                     : : "a"(HL_STATUS_OK), "Nd"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "rcx", "memory");
}
// Both: the single-step trap is held back by the MOV SS shadow until after the `out` (the pattern of
// CVE-2018-8897); on VMX it waits in the VMCS's pending debug exceptions, not in KVM's queue.
void step_over_done_in_mov_ss_shadow() {
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tmovw %%ss, %%cx\n\tmovw %%cx, %%ss\n\toutl %0, %w1"
                     : : "a"(HL_STATUS_OK), "Nd"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "rcx", "memory", "cc");
}
// The same shadow and trap on an `in`, which the host finishes before poisoning.
std::int64_t step_over_in_in_mov_ss_shadow() {
    std::uint32_t value;
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tmovw %%ss, %%cx\n\tmovw %%cx, %%ss\n\tinl %w1, %0"
                     : "=a"(value) : "Nd"(static_cast<std::uint16_t>(HL_PORT_HOST_CALL)) : "rcx", "memory", "cc");
    return forged | value;
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

// `rep ins` of `width` bytes per element, `count` elements, into `destination`, forwards or backwards.
void rep_ins_at(std::uint64_t destination, std::uint64_t count, int width, bool backwards) {
    void* d = reinterpret_cast<void*>(destination);
    const auto port = static_cast<std::uint16_t>(HL_PORT_OUTPUT);
    if (backwards) __asm__ volatile("std" ::: "cc");
    if (width == 1) __asm__ volatile("rep insb" : "+D"(d), "+c"(count) : "d"(port) : "memory");
    else if (width == 2) __asm__ volatile("rep insw" : "+D"(d), "+c"(count) : "d"(port) : "memory");
    else __asm__ volatile("rep insl" : "+D"(d), "+c"(count) : "d"(port) : "memory");
    __asm__ volatile("cld" ::: "cc");
}

// Backwards from 12 bytes above the stack's bottom into the stack guard page.
void rep_ins_into_stack_guard(std::int64_t width) {
    const hl_peb* peb = hl_get_peb();
    rep_ins_at(peb->stack_top - peb->stack_size + 12, 1u << 20, static_cast<int>(width), true);
}

// Forwards from 6 bytes below the heap's end into whatever follows it.
void rep_ins_off_heap_end(std::int64_t width) {
    const hl_peb* peb = hl_get_peb();
    rep_ins_at(peb->heap_addr + peb->heap_size - 6, 1u << 20, static_cast<int>(width), false);
}

// Backwards from just above the start of the first writable segment into the read-only page below it
// (found from the ELF program headers the loader placed at the image's start).
std::int64_t first_writable_page() {
    const hl_peb* peb = hl_get_peb();
    const auto* base = reinterpret_cast<const unsigned char*>(peb->image_addr);
    if (std::memcmp(base, "\x7f" "ELF", 4) != 0) return 0;
    std::uint64_t phoff;
    std::uint16_t phentsize, phnum;
    std::memcpy(&phoff, base + 0x20, 8);
    std::memcpy(&phentsize, base + 0x36, 2);
    std::memcpy(&phnum, base + 0x38, 2);
    for (std::uint16_t i = 0; i < phnum; ++i) {
        const unsigned char* ph = base + phoff + std::uint64_t{i} * phentsize;
        std::uint32_t type, flags;
        std::uint64_t vaddr;
        std::memcpy(&type, ph, 4);
        std::memcpy(&flags, ph + 4, 4);
        std::memcpy(&vaddr, ph + 0x10, 8);
        // The first page wholly writable: the segment's start rounded up.
        if (type == 1 && (flags & 2)) return static_cast<std::int64_t>(peb->image_addr + ((vaddr + 4095) & ~4095ull));
    }
    return 0;
}
void rep_ins_down_into_read_only(std::int64_t width) {
    const auto page = static_cast<std::uint64_t>(first_writable_page());
    if (page == 0) hl_abort(1, "no writable segment found");
    rep_ins_at(page + 8, 1u << 20, static_cast<int>(width), true);
}

// Data the next task must never see, spread over 64 pages so that restore copies some and the
// dirty log keeps others "hot".
alignas(4096) std::uint64_t vault[64 * 512];
void fill_vault(std::int64_t secret, std::int64_t pattern) {
    for (int page = 0; page < 64; ++page) {
        if (((page + pattern) % 3) != 0 || page < 2) vault[page * 512 + (pattern % 512)] = static_cast<std::uint64_t>(secret);
    }
}
std::int64_t vault_sum() {
    std::uint64_t sum = 0;
    for (const auto v : vault) sum |= v;
    return static_cast<std::int64_t>(sum);
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

// As above, but declared to return int64 and called right after a call that left a valid int64
// result in the output buffer: the host takes the stale result and the call succeeds, so nothing
// is poisoned or settled before the next call.
std::int64_t step_over_done_returning() {
    step_over_done();
    return 0;
}
std::int64_t done_in_mov_ss_shadow_returning() {
    done_in_mov_ss_shadow();
    return 0;
}
// popfq sets TF and the very next instruction is mov ss: its shadow holds the trap back past the out.
std::int64_t mov_ss_step_over_done_returning() {
    __asm__ volatile("movw %%ss, %%cx\n\tpushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tmovw %%cx, %%ss\n\toutl %0, %w1"
                     : : "a"(HL_STATUS_OK), "Nd"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "rcx", "memory", "cc");
    return 0;
}
std::int64_t mov_ss_step_over_in() {
    std::uint32_t value;
    __asm__ volatile("movw %%ss, %%cx\n\tpushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n\tmovw %%cx, %%ss\n\tinl %w1, %0"
                     : "=a"(value) : "Nd"(static_cast<std::uint16_t>(HL_PORT_HOST_CALL)) : "rcx", "memory", "cc");
    return forged | value;
}

// `rep insl` of `count` elements at any address: the library's supervisor-only pages (GDT, TSS and its
// I/O bitmap, page tables) and the user read-only ones (PEB, input buffer). KVM's emulator does the
// write at CPL3 and must refuse; if it did not, restore must still undo it.
void rep_ins_to(std::int64_t address, std::int64_t count) {
    rep_ins_at(static_cast<std::uint64_t>(address), static_cast<std::uint64_t>(count), 4, false);
}
std::int64_t input_addr() { return static_cast<std::int64_t>(hl_get_peb()->input_addr); }
std::int64_t peb_checksum() {
    const hl_peb* peb = hl_get_peb();
    return static_cast<std::int64_t>(peb->abi_version ^ peb->input_addr ^ peb->input_size ^ peb->output_addr ^
                                     peb->heap_addr ^ peb->stack_top ^ peb->image_addr);
}

// addr32 rep insl (67 f3 6d): the destination is EDI and the count ECX; RDI's high half, set here,
// is ignored, so the write lands in `landing`.
void addr32_rep_ins(std::int64_t count) {
    std::uint64_t d = reinterpret_cast<std::uint64_t>(landing) | (std::uint64_t{1} << 32);
    auto n = static_cast<std::uint64_t>(count) | (std::uint64_t{1} << 40);
    __asm__ volatile(".byte 0x67, 0xf3, 0x6d" : "+D"(d), "+c"(n) : "d"(static_cast<std::uint16_t>(HL_PORT_DONE)) : "memory");
}

// Counts the bytes equal to `needle[0]` in the whole input buffer, past this call's own message: what
// the host wrote there for an earlier task must be gone.
std::int64_t count_in_input(std::string needle) {
    const hl_peb* peb = hl_get_peb();
    const auto* in = reinterpret_cast<const unsigned char*>(peb->input_addr);
    std::uint64_t own;
    std::memcpy(&own, in, sizeof own);
    std::int64_t n = 0;
    for (std::uint64_t i = HL_BUFFER_HEADER_SIZE + own; i < peb->input_size; ++i) n += in[i] == static_cast<unsigned char>(needle[0]);
    return n;
}

}  // namespace

extern "C" void hl_guest_init() {
    canary = canary_value;
    using hl::guest::register_function;
    register_function<host_call_too_big>("HostCallTooBig");
    register_function<host_call_garbage>("HostCallGarbage");
    register_function<host_call_offsets_outside>("HostCallOffsetsOutside");
    register_function<wrong_types_to_host>("WrongTypesToHost");
    register_function<huge_abort>("HugeAbort");
    register_function<result_too_big>("ResultTooBig");
    register_function<result_garbage>("ResultGarbage");
    register_function<unknown_port>("UnknownPort");
    register_function<unknown_output_kind>("UnknownOutputKind");
    register_function<log_garbage>("LogGarbage");
    register_function<read_port>("ReadPort");
    register_function<forbidden_port>("ForbiddenPort");
    register_function<done_with_failure>("DoneWithFailure");
    register_function<scribble_then_return>("ScribbleThenReturn");
    register_function<log_below_level>("LogBelowLevel");

    register_function<in_then_forge>("InThenForge");
    register_function<ins_over_canary>("InsOverCanary");
    register_function<rep_ins>("RepIns");
    register_function<rep_ins_backwards>("RepInsBackwards");
    register_function<ins_into_code>("InsIntoCode");
    register_function<outs_done>("OutsDone");
    register_function<identity>("Identity");
    register_function<read_canary>("ReadCanary");
    register_function<landing_sum>("LandingSum");

    register_function<read_through_fs_base>("ReadThroughFsBase");
    register_function<write_through_gs_base>("WriteThroughGsBase");
    register_function<outs_from_unmapped>("OutsFromUnmapped");
    register_function<breakpoint>("Breakpoint");
    register_function<breakpoint_before_allowed_out>("BreakpointBeforeAllowedOut");
    register_function<breakpoint_long_form>("BreakpointLongForm");
    register_function<icebp>("Icebp");
    register_function<single_step>("SingleStep");
    register_function<step_into_ud2>("StepIntoUd2");
    register_function<single_step_onto_out>("SingleStepOntoAllowedOut");
    register_function<system_call>("SystemCall");
    register_function<sysenter>("Sysenter");
    register_function<misaligned_with_ac>("MisalignedWithAc");
    register_function<vmcall>("Vmcall");
    register_function<vmmcall>("Vmmcall");
    register_function<movdir64b>("Movdir64b");
    register_function<ldtilecfg>("Ldtilecfg");

    register_function<set_fpu_state>("SetFpuState");
    register_function<read_mxcsr>("ReadMxcsr");
    register_function<read_fcw>("ReadFcw");
    register_function<read_fsw>("ReadFsw");
    register_function<read_xmm15>("ReadXmm15");
    register_function<set_avx512_state>("SetAvx512State");
    register_function<read_zmm31_high>("ReadZmm31High");
    register_function<read_k7>("ReadK7");
    register_function<read_ymm14_high>("ReadYmm14High");
    register_function<set_segment_bases>("SetSegmentBases");
    register_function<read_fs_base>("ReadFsBase");
    register_function<read_gs_base>("ReadGsBase");
    register_function<step_over_done>("StepOverDone");
    register_function<done_in_mov_ss_shadow>("DoneInMovSsShadow");
    register_function<step_over_done_in_mov_ss_shadow>("StepOverDoneInMovSsShadow");
    register_function<step_over_in_in_mov_ss_shadow>("StepOverInInMovSsShadow");
    register_function<in_port>("InPort");
    register_function<rep_ins_into_stack_guard>("RepInsIntoStackGuard");
    register_function<rep_ins_off_heap_end>("RepInsOffHeapEnd");
    register_function<rep_ins_down_into_read_only>("RepInsDownIntoReadOnly");
    register_function<first_writable_page>("FirstWritablePage");
    register_function<fill_vault>("FillVault");
    register_function<vault_sum>("VaultSum");
    register_function<host_call_then_in>("HostCallThenIn");
    register_function<call_nested>("CallNested");
    register_function<step_over_done_returning>("StepOverDoneReturning");
    register_function<done_in_mov_ss_shadow_returning>("DoneInMovSsShadowReturning");
    register_function<mov_ss_step_over_done_returning>("MovSsStepOverDoneReturning");
    register_function<mov_ss_step_over_in>("MovSsStepOverIn");
    register_function<rep_ins_to>("RepInsTo");
    register_function<input_addr>("InputAddr");
    register_function<peb_checksum>("PebChecksum");
    register_function<addr32_rep_ins>("Addr32RepIns");
    register_function<count_in_input>("CountInInput");
}
