// SPDX-License-Identifier: Apache-2.0
// The fuzz targets' guest. Send() puts fuzzer bytes in the output buffer and exits on a port of the
// fuzzer's choice, so the host decodes them on its real paths (result, host call, print, log,
// abort). RunCode() jumps into hl_fuzz_code, two pages of code that the host patches into this ELF
// with a fuzzer-chosen instruction sequence, with registers pointing into every region. Probe()
// digests everything a task could leave behind for the next one.
#include <cstdint>
#include <cstring>
#include <span>

#include "hl/guest.hpp"

extern "C" {
// [0, hl_fuzz_code_size): the host's instruction bytes (NOPs here); then a stub that returns to
// RunCode's caller with the stack pointer saved on the way in.
extern const unsigned char hl_fuzz_code[];
std::int64_t hl_fuzz_enter(const std::uint64_t* registers);
std::uint64_t hl_fuzz_saved_rsp;
extern char __bss_start[], _end[];
}

__asm__(R"(
    .section .text.hl_fuzz,"ax",@progbits
    .balign 4096
    .globl hl_fuzz_code
hl_fuzz_code:
    .ascii "HL-FUZZ-CODE-PAGES-PATCHED-HERE!"
    .fill 8192 - 64 - 32, 1, 0x90
hl_fuzz_return:
    mov hl_fuzz_saved_rsp(%rip), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    mov $0x600d, %eax
    ret
    .balign 4096

    .text
    .globl hl_fuzz_enter
hl_fuzz_enter:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, hl_fuzz_saved_rsp(%rip)
    mov 0(%rdi), %rax
    mov 8(%rdi), %rbx
    mov 16(%rdi), %rcx
    mov 24(%rdi), %rdx
    mov 32(%rdi), %rsi
    mov 40(%rdi), %rbp
    mov 48(%rdi), %r8
    mov 56(%rdi), %r9
    mov 64(%rdi), %r10
    mov 72(%rdi), %r11
    mov 80(%rdi), %r12
    mov 88(%rdi), %r13
    mov 96(%rdi), %r14
    mov 104(%rdi), %r15
    mov 112(%rdi), %rdi
    jmp hl_fuzz_code
)");

namespace {

alignas(4096) unsigned char scratch[4 * 4096];  // bss the generated code writes through its registers
std::uint64_t data_word = 0x5eed;                 // .data: the digest covers [its page, _end)

std::uint64_t mix(std::uint64_t h, std::uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

std::uint64_t digest(std::uint64_t h, const void* p, std::uint64_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::uint64_t i = 0; i < n; ++i) h = mix(h, b[i]);
    return h;
}

unsigned char* output() { return reinterpret_cast<unsigned char*>(hl_get_peb()->output_addr); }

std::int64_t send(std::int32_t port, std::int32_t value, std::int64_t claimed, std::span<const std::uint8_t> bytes) {
    const hl_peb* peb = hl_get_peb();
    const std::uint64_t n = bytes.size() < peb->output_size - 8 ? bytes.size() : peb->output_size - 8;
    std::memcpy(output() + 8, bytes.data(), n);
    const std::uint64_t size = claimed < 0 ? n : static_cast<std::uint64_t>(claimed);
    std::memcpy(output(), &size, sizeof size);
    const auto p = static_cast<std::uint16_t>(port);
    __asm__ volatile("outl %0, %w1" : : "a"(static_cast<std::uint32_t>(value)), "Nd"(p) : "memory");
    return static_cast<std::int64_t>(n);
}

std::int64_t identity(std::int64_t x) { return x; }

// Where the generated code's registers point: every region a task can reach, plus a few addresses
// it must not (null, the stack guard, the supervisor-only page tables at the bottom of memory).
std::int64_t run_code(std::span<const std::uint8_t> selectors) {
    const hl_peb* peb = hl_get_peb();
    const std::uint64_t stack_bottom = peb->stack_top - peb->stack_size;
    const std::uint64_t anchors[] = {
        reinterpret_cast<std::uint64_t>(scratch), peb->output_addr, peb->input_addr, peb->heap_addr,
        peb->stack_top - 512, stack_bottom + 64, stack_bottom - 4096, reinterpret_cast<std::uint64_t>(hl_fuzz_code),
        reinterpret_cast<std::uint64_t>(peb), 0, 0x1000, peb->image_addr, HL_PORT_DONE, HL_PORT_HOST_CALL,
        HL_PORT_OUTPUT, HL_PORT_ABORT};
    std::uint64_t regs[15];
    for (std::size_t i = 0; i < 15; ++i) {
        const std::uint8_t s = i < selectors.size() ? selectors[i] : static_cast<std::uint8_t>(i);
        regs[i] = anchors[s % std::size(anchors)] + (s / std::size(anchors)) * 8;
    }
    return hl_fuzz_enter(regs);
}

std::uint64_t probe() {
    std::uint64_t callee_saved[6];
    __asm__ volatile("mov %%rbx, 0(%0)\n\tmov %%rbp, 8(%0)\n\tmov %%r12, 16(%0)\n\tmov %%r13, 24(%0)\n\t"
                     "mov %%r14, 32(%0)\n\tmov %%r15, 40(%0)"
                     : : "r"(callee_saved) : "memory");
    const hl_peb* peb = hl_get_peb();
    std::uint64_t h = digest(0xcbf29ce484222325ull, callee_saved, sizeof callee_saved);
    unsigned char fpu[16 * 16 + 8] = {};
    __asm__ volatile("movdqu %%xmm0, 0(%0)\n\tmovdqu %%xmm1, 16(%0)\n\tmovdqu %%xmm2, 32(%0)\n\tmovdqu %%xmm3, 48(%0)\n\t"
                     "movdqu %%xmm4, 64(%0)\n\tmovdqu %%xmm5, 80(%0)\n\tmovdqu %%xmm6, 96(%0)\n\tmovdqu %%xmm7, 112(%0)\n\t"
                     "movdqu %%xmm8, 128(%0)\n\tmovdqu %%xmm9, 144(%0)\n\tmovdqu %%xmm10, 160(%0)\n\tmovdqu %%xmm11, 176(%0)\n\t"
                     "movdqu %%xmm12, 192(%0)\n\tmovdqu %%xmm13, 208(%0)\n\tmovdqu %%xmm14, 224(%0)\n\tmovdqu %%xmm15, 240(%0)\n\t"
                     "stmxcsr 256(%0)\n\tfnstcw 260(%0)"
                     : : "r"(fpu) : "memory");
    h = digest(h, fpu, sizeof fpu);
    std::uint64_t bases[2];
    __asm__ volatile("rdfsbase %0\n\trdgsbase %1" : "=r"(bases[0]), "=r"(bases[1]));
    h = digest(h, bases, sizeof bases);
    const auto data_page = reinterpret_cast<std::uint64_t>(&data_word) & ~std::uint64_t{4095};
    h = digest(h, reinterpret_cast<const void*>(data_page), reinterpret_cast<std::uint64_t>(_end) - data_page);
    h = digest(h, reinterpret_cast<const void*>(peb->heap_addr), peb->heap_size);
    h = digest(h, reinterpret_cast<const void*>(peb->input_addr), peb->input_size);
    h = digest(h, reinterpret_cast<const void*>(peb->output_addr), peb->output_size);
    // The stack below this frame, less room for digest()'s own frame.
    std::uint64_t sp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    const std::uint64_t bottom = peb->stack_top - peb->stack_size;
    return digest(h, reinterpret_cast<const void*>(bottom), sp - 1024 - bottom);
}

}  // namespace

extern "C" void hl_guest_init() {
    using hl::guest::register_function;
    register_function<send>("Send");
    register_function<identity>("Identity");
    register_function<run_code>("RunCode");
    register_function<probe>("Probe");
}
