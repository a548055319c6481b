// SPDX-License-Identifier: Apache-2.0
// CPU exceptions, traps and instructions a guest may not use, raised on purpose, and trap and
// interrupt-shadow state left behind at the end of a call.
#include <cstdint>

#include "hostile.hpp"

namespace {

using namespace hostile;

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

std::int64_t vmcall() {
    std::int64_t ret;
    __asm__ volatile("vmcall" : "=a"(ret) : "a"(0) : "memory");
    return ret;
}

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

}  // namespace

void hostile::register_trap_attacks() {
    using hl::guest::register_function;
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
    register_function<step_over_done>("StepOverDone");
    register_function<done_in_mov_ss_shadow>("DoneInMovSsShadow");
    register_function<step_over_done_in_mov_ss_shadow>("StepOverDoneInMovSsShadow");
    register_function<step_over_in_in_mov_ss_shadow>("StepOverInInMovSsShadow");
    register_function<step_over_done_returning>("StepOverDoneReturning");
    register_function<done_in_mov_ss_shadow_returning>("DoneInMovSsShadowReturning");
    register_function<mov_ss_step_over_done_returning>("MovSsStepOverDoneReturning");
    register_function<mov_ss_step_over_in>("MovSsStepOverIn");
}
