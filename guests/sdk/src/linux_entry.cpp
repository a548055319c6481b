// SPDX-License-Identifier: Apache-2.0
// The Linux flavours' start (glibc, musl): the guest is an ordinary static-PIE program. The host
// enters hl_entry(peb, op) as for a freestanding guest; for HL_OP_INIT, RSP is at argc of a Linux
// initial stack and the libc's own _start runs (self-relocation, TLS, constructors), then main()
// below. Every later operation enters hl_entry on a fresh stack and goes straight to the dispatch.
#include <cstdio>

#include "hl/abi/hl_abi.h"
#include "hl/guest.h"
#include "io.hpp"

extern "C" {
[[noreturn]] void hl_entry(const hl_peb* peb, std::uint64_t op);
[[noreturn]] void hl_linux_operation(const hl_peb* peb, std::uint64_t op);
int main(int argc, char** argv);
}

static_assert(HL_NOTE_GUEST_KIND == 1 && HL_GUEST_KIND_LINUX == 2 && HL_OP_INIT == 0 && sizeof HL_NOTE_NAME == 11,
              "the assembly below spells these out");

// The note that tells the host this guest is a Linux program (hl_abi.h). "R" (SHF_GNU_RETAIN) keeps
// it through --gc-sections.
__asm__(R"(
    .pushsection .note.hyperlight, "aR", @note
    .balign 4
    .long 11, 4, 1
    .asciz ")" HL_NOTE_NAME R"("
    .balign 4
    .long 2
    .popsection
)");

// hl_entry: at HL_OP_INIT keep the PEB (a RIP-relative store: nothing is relocated yet), clear RDX
// (no rtld_fini for the libc to register) and jump to the libc's _start with RSP untouched.
__asm__(R"(
    .pushsection .text.hl_entry, "ax", @progbits
    .globl hl_entry
    .type hl_entry, @function
hl_entry:
    cmp $0, %rsi
    jne 1f
    mov %rdi, hl_linux_boot_peb(%rip)
    xor %edx, %edx
    jmp _start
1:  jmp hl_linux_operation
    .size hl_entry, . - hl_entry
    .popsection
)");

extern "C" {
const hl_peb* hl_linux_boot_peb = nullptr;
}

namespace hl::guest::detail {

void flush_libc_output() {
    std::fflush(stdout);
    std::fflush(stderr);
}

}  // namespace hl::guest::detail

extern "C" int main(int, char**) {
    using namespace hl::guest::detail;
    boot_info = hl_linux_boot_peb;
    if (boot_info == nullptr || boot_info->abi_version != HL_ABI_VERSION) finish(HL_STATUS_INIT_FAILED);
    // Text reaches the host's print handler a line at a time, as the SDK's own printf does.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    hl_guest_init();
    finish(HL_STATUS_OK);
}

extern "C" void hl_linux_operation(const hl_peb*, std::uint64_t op) {
    using namespace hl::guest::detail;
    if (op == HL_OP_DISPATCH && boot_info != nullptr) {
        dispatch_call();
        finish(HL_STATUS_OK);
    }
    hl_abort(HL_ABORT_PROTOCOL, "unknown operation requested by the host");
}
