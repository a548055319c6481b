// SPDX-License-Identifier: Apache-2.0
// The slow path of a Linux program: a system call stops the vCPU (see vmm::syscall_entry), the
// emulated kernel serves it against the sandbox's memory, and the guest goes on after its `syscall`.
#include <cstdio>
#include <ctime>
#include <string>

#include "hl/abi/hl_abi.h"
#include "sandbox/interrupt.hpp"
#include "sandbox/linux_process.hpp"
#include "sandbox/poisoning.hpp"
#include "sandbox/sandbox_core.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

// The flags a program may keep across a system call: the arithmetic ones, DF, AC and ID. IF, IOPL,
// TF, NT and RF stay as the host runs guests (off).
constexpr std::uint64_t user_rflags = 0x1u | 0x4u | 0x10u | 0x40u | 0x80u | 0x400u | 0x800u | 0x40000u | 0x200000u;
std::int64_t realtime_ns() {
    timespec t{};
    ::clock_gettime(CLOCK_REALTIME, &t);
    return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

}  // namespace

bool sandbox_core::serve_system_call(call_state& c) {
    vmm::cpu_state cpu;
    std::optional<system_call_site> site;
    try {
        cpu = vm_->read_cpu_state();
        site = trapped_system_call(image_->fault_view(memory_, cpu));
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the guest stopped and its state could not be read: ") + e.what());
    }
    if (!site) return false;
    const std::int64_t traced_from = c.traced ? monotonic_ns() : 0;
    struct trace_on_exit {
        sandbox_core& core;
        std::int64_t from;
        std::uint64_t number;
        ~trace_on_exit() {
            if (from == 0) return;
            char text[24];
            std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(number));
            core.trace("system_call", text, {}, from);
        }
    } traced{*this, traced_from, cpu.rax};
    ++c.used.system_calls;
    ++usage_.system_calls;

    const syscall_request request{cpu.rax, {cpu.rdi, cpu.rsi, cpu.rdx, cpu.r10, cpu.r8, cpu.r9}};
    const linux_kernel::hooks hooks{
        [this](int, std::string_view bytes) { services_.print(bytes); },
        [this](std::string_view message) { services_.notice(log_level::warning, message); },
        [](std::span<std::byte> out) { host_random(out); },
        [] { return realtime_ns(); },
        [] { return monotonic_ns(); },
    };
    syscall_result result;
    try {
        auto view = kernel_view(memory_, *image_);
        result = linux_kernel::serve(view, hooks, request, cpu.fs_base);
    } catch (const poisoning& p) {
        poison_and_throw(p);
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, util::strfmt("serving system call %llu failed: %s",
                                                      static_cast<unsigned long long>(request.number), e.what()));
    }
    if (result.what == syscall_result::kind::exited) {
        // The core shows the program in its exit call, as Linux would: RIP after the `syscall`.
        vmm::cpu_state shown = cpu;
        shown.rip = site->return_rip;
        const std::string dumped = crash_dump(shown, 0);
        try {
            vm_->reset_cpu();
        } catch (const std::exception&) {
            // poisoned below either way; restore() puts the vCPU back
        }
        const std::string message =
            c.op == HL_OP_INIT
                ? util::strfmt(
                      "the guest exited with status %lld during initialisation (its main returned, or it "
                      "called exit)",
                      static_cast<long long>(result.value))
                : util::strfmt("the guest exited with status %lld during the call to '%s'",
                               static_cast<long long>(result.value), c.name.c_str());
        poison_and_throw(errc::guest_aborted, message + dumped);
    }
    cpu.rax = static_cast<std::uint64_t>(result.value);
    cpu.rip = site->return_rip;
    cpu.rflags = (site->saved_rflags & user_rflags) | vmm::rflags_reserved;
    // What `syscall` leaves in them on Linux, whichever way the call trapped (#UD sets neither).
    cpu.rcx = site->return_rip;
    cpu.r11 = site->saved_rflags;
    if (result.new_fs_base) cpu.fs_base = *result.new_fs_base;
    try {
        vm_->return_from_syscall(cpu);
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the vCPU could not go on after a system call: ") + e.what());
    }
    return true;
}

}  // namespace hl::detail
