// SPDX-License-Identifier: Apache-2.0
#include "sandbox/sandbox_core.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <string>
#include <thread>
#include <utility>

#include "hl/abi/hl_abi.h"
#include "hl/trace.hpp"
#include "sandbox/fault.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

constexpr std::size_t max_abort_message = 4096;

// The signal a Linux process would have died of, for the core file's notes.
int signal_for(const fault_report& report) {
    const auto is = [&](const char* prefix) { return report.kind.starts_with(prefix); };
    if (is("invalid opcode") || is("undecodable")) return SIGILL;
    if (is("divide error")) return SIGFPE;
    if (is("breakpoint") || is("single-step") || is("debug trap")) return SIGTRAP;
    if (is("alignment check")) return SIGBUS;
    if (is("system call")) return SIGSYS;
    return SIGSEGV;  // page faults, general protection, stack overflow
}

}  // namespace

sandbox_core::sandbox_core(std::shared_ptr<const sandbox_image> image, mem::guest_memory memory)
    : image_(std::move(image)), layout_(image_->layout), memory_(std::move(memory)) {}

std::uint64_t sandbox_core::next_id() noexcept {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

bool sandbox_core::tracing() const noexcept { return image_->trace && image_->trace->recording(); }

void sandbox_core::trace(std::string_view name, std::string_view more, std::string_view detail, std::int64_t start,
                         bool ends_call, std::int64_t end) noexcept {
    if (!tracing()) return;
    static thread_local const auto thread = static_cast<std::uint64_t>(::syscall(SYS_gettid));
    try {
        std::string full(name);
        if (!more.empty()) full.append(" ").append(more);
        const std::int64_t until = end != 0 ? end : monotonic_ns();
        image_->trace->record({std::move(full), std::string(detail), start, until - start, id_, thread}, ends_call);
    } catch (const std::exception&) {
        // Out of memory for one more event: the trace misses it, the call goes on.
    }
}

std::unique_ptr<sandbox_core> sandbox_core::create(std::vector<std::byte> elf, const sandbox_config& config) {
    auto built = sandbox_image::build(std::move(elf), config);
    auto core = std::unique_ptr<sandbox_core>(new sandbox_core(std::move(built.image), std::move(built.memory)));
    core->dirty_.adopt_host_writes(core->memory_);
    return core;
}

sandbox_core::~sandbox_core() {
    // Freeing memory under a call that another thread still runs would crash the host: stop its guest
    // and wait until it has left (a host function it is in finishes first).
    while (driver_.try_take() == driving_thread::claim::held_by_another_thread) {
        interrupt_->kill();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    // Handles may outlive the sandbox: from now on their kill() finds nothing to stop.
    std::lock_guard lock(interrupt_->mutex);
    interrupt_->immediate_exit = nullptr;
}

void sandbox_core::create_vm() {
    vm_.emplace(vmm::vm::create(memory_, image_->setup));
    std::lock_guard lock(interrupt_->mutex);
    interrupt_->immediate_exit = vm_->immediate_exit();
    interrupt_->signal = image_->interrupt_signal;
}

void sandbox_core::let_go(std::unique_ptr<sandbox_core> core) noexcept {
    sandbox_core* self = core.get();
    if (self == nullptr) return;
    std::unique_lock lock(self->lifetime_);
    if (self->guest_calls_ > 0) {
        self->self_ = std::move(core);
        self->sandbox_gone_.store(true);
        // The last guest_call may free the core as soon as the lock is gone: kill through our own
        // reference to the interrupt state, which outlives it.
        const std::shared_ptr<interrupt_state> interrupt = self->interrupt_;
        lock.unlock();
        interrupt->kill();
        return;
    }
    if (self->driver_.held_by_this_thread()) {
        self->self_ = std::move(core);
        self->sandbox_gone_.store(true);
        return;
    }
    lock.unlock();
    core.reset();
}

std::unique_ptr<sandbox_core> sandbox_core::take_abandoned() noexcept {
    std::lock_guard lock(lifetime_);
    if (guest_calls_ > 0) return nullptr;  // the last guest_call frees it
    return std::move(self_);
}

void sandbox_core::attach_call() noexcept {
    std::lock_guard lock(lifetime_);
    ++guest_calls_;
}

void sandbox_core::detach_call(sandbox_core* core) noexcept {
    std::unique_ptr<sandbox_core> doomed;  // freed after the lock inside it is released
    std::lock_guard lock(core->lifetime_);
    if (--core->guest_calls_ == 0) doomed = std::move(core->self_);
}

void sandbox_core::settle_vcpu() {
    try {
        vm_->complete_pending();
    } catch (const std::exception& e) {
        vcpu_unusable_ = true;
        poison_and_throw(errc::vm_error, e.what());
    }
}

void sandbox_core::check_not_in_callback(const char* what) const {
    if (services_.in_callback()) {
        throw error(errc::usage_error,
                    util::strfmt("cannot %s from inside one of its host functions or handlers: they must not drive "
                                 "their own sandbox",
                                 what));
    }
}

void sandbox_core::poison_and_throw(errc code, const std::string& message) {
    poison_reason_ = message;
    throw error(code, message);
}

void sandbox_core::poison_and_throw(const poisoning& failure) {
    poison_and_throw(failure.failure(), failure.reason());
}

std::string sandbox_core::crash_dump(const vmm::cpu_state& cpu, int signal,
                                     std::optional<std::uint64_t> fault_address) noexcept {
    if (image_->core_dumps.directory.empty()) return {};
    const auto request = [&] {
        core_thread thread{cpu, std::nullopt, signal, static_cast<int>(::getpid())};
        try {
            thread.fx_state = vm_->read_fx_state();
        } catch (const std::exception&) {
            // the core goes without them (no NT_FPREGSET)
        }
        return image_->core_view(memory_, thread, fault_address);
    };
    try {
        const std::string outcome = dump_core(image_->core_dumps, request);
        return outcome.empty() ? outcome : "; " + outcome;
    } catch (const std::exception&) {
        return {};  // out of memory for the message: the failure is reported without it
    }
}

std::string sandbox_core::crash_dump(int signal) noexcept {
    if (image_->core_dumps.directory.empty()) return {};
    vmm::cpu_state cpu = vm_->regs();
    try {
        cpu = vm_->read_cpu_state();  // the FS and GS bases too
    } catch (const std::exception&) {
        // the general registers alone
    }
    return crash_dump(cpu, signal);
}

void sandbox_core::throw_abort(std::uint32_t code) {
    const auto text = buffers_.message_prefix(max_abort_message);
    std::string message(reinterpret_cast<const char*>(text.data()), text.size());
    poison_and_throw(errc::guest_aborted,
                     util::strfmt("the guest aborted with code 0x%x: %s", code, message.c_str()) + crash_dump(SIGABRT));
}

void sandbox_core::throw_fault() {
    vmm::cpu_state cpu;
    try {
        cpu = vm_->read_cpu_state();
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the guest faulted and its state could not be read: ") + e.what());
    }
    fault_report report;
    try {
        report = classify_fault(image_->fault_view(memory_, cpu));
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the guest faulted and its state could not be read: ") + e.what());
    }
    // The core shows the instruction the report names: a trap or a system call stops the CPU
    // elsewhere.
    vmm::cpu_state shown = cpu;
    shown.rip = report.rip;
    const std::string dumped = crash_dump(shown, signal_for(report), report.address);
    try {
        vm_->reset_cpu();
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the guest faulted and its state could not be read: ") + e.what());
    }
    poison_and_throw(report.code, report.message + dumped);
}

void sandbox_core::set_log_level(log_level level) {
    services_.set_level(level);
    apply_log_level();
}

void sandbox_core::apply_log_level() {
    const auto level = static_cast<std::uint32_t>(services_.level());
    hl_peb peb = memory_.read<hl_peb>(layout_.peb());
    if (peb.log_level == level) return;  // leave the page clean
    peb.log_level = level;
    memory_.write(layout_.peb(), peb);
}

bool sandbox_core::serve_host_call(call_state& c) {
    try {
        return services_.serve(buffers_, c);
    } catch (const poisoning& p) {
        poison_and_throw(p);
    }
}

void sandbox_core::answer_host_call(call_state& c) { services_.answer(buffers_, c); }

std::string sandbox_core::host_call_name() const noexcept {
    try {
        return util::name_for_message(protocol::decode_call(buffers_.message("host call")).function_name);
    } catch (...) {
        return {};  // the guest's call was malformed (it failed), or no memory for the name
    }
}

void sandbox_core::deliver_output(std::uint32_t kind) {
    try {
        services_.deliver_output(buffers_, kind);
    } catch (const poisoning& p) {
        poison_and_throw(p);
    }
}

}  // namespace hl::detail
