// SPDX-License-Identifier: Apache-2.0
// The x86-64 notes of a core file, in the layouts glibc's <sys/procfs.h> gives Linux's: what gdb
// reads a thread's registers and the process's name from.
#include <elf.h>
#include <sys/procfs.h>
#include <sys/user.h>

#include <algorithm>
#include <cstring>

#include "sandbox/core_file.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::detail {
namespace {

static_assert(sizeof(elf_prstatus) == 336, "x86-64 Linux's NT_PRSTATUS descriptor");
static_assert(sizeof(elf_prpsinfo) == 136, "x86-64 Linux's NT_PRPSINFO descriptor");
static_assert(sizeof(elf_fpregset_t) == 512, "NT_FPREGSET is FXSAVE's format");
static_assert(sizeof(user_regs_struct) == sizeof(elf_gregset_t), "pr_reg is a user_regs_struct");

template <class T>
core_note note_of(std::uint32_t type, const T& value) {
    core_note n{type, std::vector<std::byte>(sizeof value)};
    std::memcpy(n.desc.data(), &value, sizeof value);
    return n;
}

// The guest's selectors are the ones the host gave it (vmm::x86_64): it runs at CPL3 and cannot
// load others.
user_regs_struct user_regs(const vmm::cpu_state& c) {
    user_regs_struct r{};
    r.r15 = c.r15, r.r14 = c.r14, r.r13 = c.r13, r.r12 = c.r12, r.rbp = c.rbp, r.rbx = c.rbx;
    r.r11 = c.r11, r.r10 = c.r10, r.r9 = c.r9, r.r8 = c.r8, r.rax = c.rax, r.rcx = c.rcx;
    r.rdx = c.rdx, r.rsi = c.rsi, r.rdi = c.rdi;
    r.orig_rax = ~0ull;  // no system call in progress, so a debugger restarts none
    r.rip = c.rip;
    r.cs = vmm::x86_64::user_code_selector;
    r.eflags = c.rflags;
    r.rsp = c.rsp;
    r.ss = r.ds = r.es = r.fs = r.gs = vmm::x86_64::user_data_selector;
    r.fs_base = c.fs_base;
    r.gs_base = c.gs_base;
    return r;
}

}  // namespace

std::uint16_t core_machine() noexcept { return EM_X86_64; }

std::vector<core_note> thread_notes(const core_thread& thread, std::string_view program) {
    elf_prstatus status{};
    status.pr_info.si_signo = thread.signal;
    status.pr_cursig = static_cast<short>(thread.signal);
    status.pr_pid = status.pr_pgrp = status.pr_sid = thread.pid;
    const user_regs_struct regs = user_regs(thread.cpu);
    std::memcpy(&status.pr_reg, &regs, sizeof regs);
    status.pr_fpvalid = thread.fx_state ? 1 : 0;

    elf_prpsinfo info{};
    info.pr_state = 0;
    info.pr_sname = 'R';
    info.pr_pid = info.pr_pgrp = info.pr_sid = thread.pid;
    const std::size_t name = std::min(program.size(), sizeof info.pr_fname - 1);
    std::memcpy(info.pr_fname, program.data(), name);
    const std::size_t args = std::min(program.size(), sizeof info.pr_psargs - 1);
    std::memcpy(info.pr_psargs, program.data(), args);

    std::vector<core_note> notes{note_of(NT_PRSTATUS, status), note_of(NT_PRPSINFO, info)};
    if (thread.fx_state) notes.push_back(note_of(NT_FPREGSET, *thread.fx_state));
    return notes;
}

}  // namespace hl::detail
