// SPDX-License-Identifier: Apache-2.0
#include "sandbox/sandbox_core.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "hl/abi/hl_abi.h"
#include "loader/elf_image.hpp"
#include "protocol/codec.hpp"
#include "sandbox/fault.hpp"
#include "util/strfmt.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::detail {
namespace {

constexpr std::uint64_t rflags_reserved = 0x2;  // bit 1 is always set; IOPL 0, interrupts off
constexpr std::size_t max_abort_message = 4096;
constexpr std::size_t builder_keep_limit = 1 << 20;

mem::perms region_perms(loader::access a) {
    mem::perms p = mem::perms::user;
    if (loader::has(a, loader::access::read)) p = p | mem::perms::read;
    if (loader::has(a, loader::access::write)) p = p | mem::perms::write;
    if (loader::has(a, loader::access::execute)) p = p | mem::perms::execute | mem::perms::read;
    return p;
}

const char* segment_name(loader::access a) {
    if (loader::has(a, loader::access::execute)) return "guest code";
    if (loader::has(a, loader::access::write)) return "guest data";
    return "guest read-only data";
}

// 64-bit FNV-1a over 8-byte words: identifies a guest image cheaply (not a cryptographic hash).
std::uint64_t hash_bytes(std::span<const std::byte> bytes) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    std::size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, bytes.data() + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < bytes.size(); ++i) h = (h ^ static_cast<std::uint64_t>(bytes[i])) * 0x100000001b3ull;
    return h;
}

errc errc_for(protocol::guest_error_kind kind) {
    switch (kind) {
    case protocol::guest_error_kind::user: return errc::guest_error;
    case protocol::guest_error_kind::function_not_found: return errc::unknown_function;
    case protocol::guest_error_kind::parameter_mismatch: return errc::parameter_mismatch;
    case protocol::guest_error_kind::return_type_mismatch: return errc::return_type_mismatch;
    case protocol::guest_error_kind::malformed_call: return errc::protocol_error;  // poisons, see read_result
    case protocol::guest_error_kind::out_of_memory: return errc::out_of_memory;
    case protocol::guest_error_kind::result_too_large: return errc::result_too_large;
    case protocol::guest_error_kind::host_function_error: return errc::host_function_error;
    case protocol::guest_error_kind::argument_too_large: return errc::argument_too_large;
    }
    return errc::protocol_error;
}

}  // namespace

sandbox_core::sandbox_core(std::shared_ptr<const sandbox_image> image, mem::guest_memory memory)
    : image_(std::move(image)),
      layout_(image_->layout),
      memory_(std::move(memory)),
      populated_(memory_.pages()),
      dirty_(memory_.pages()),
      previous_dirty_(memory_.pages()),
      rearm_(memory_.pages()) {}

std::unique_ptr<sandbox_core> sandbox_core::create(std::vector<std::byte> elf, const sandbox_config& config) {
    // The file, not the loaded image: hashing the image would read (and so allocate) every page of
    // its bss.
    const std::uint64_t guest_hash = hash_bytes(elf);
    const auto image = loader::elf_image::parse(std::move(elf));
    const auto layout = mem::layout::compute(config, image.image_size());
    auto memory = mem::guest_memory::create(layout.total_size());

    image.load(memory, layout.image());  // fresh memory is zero: only the pages with file bytes are written

    std::vector<mem::region> regions = layout.fixed_regions();
    for (const auto& s : image.segments()) {
        regions.push_back({segment_name(s.perms), layout.image() + s.offset, s.size, region_perms(s.perms)});
    }
    std::sort(regions.begin(), regions.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });

    vmm::cpu_setup setup = vmm::x86_64::write_descriptor_tables(memory, layout.gdt(), layout.tss(), HL_PORT_FIRST,
                                                                HL_PORT_LAST);
    setup.cr3 = vmm::x86_64::write_page_tables(memory, layout.page_tables(), layout.page_table_pages(), regions);

    hl_peb peb{};
    peb.abi_version = HL_ABI_VERSION;
    peb.log_level = static_cast<std::uint32_t>(log_level::info);
    peb.input_addr = layout.input().value;
    peb.input_size = layout.input_size();
    peb.output_addr = layout.output().value;
    peb.output_size = layout.output_size();
    peb.heap_addr = layout.heap().value;
    peb.heap_size = layout.heap_size();
    peb.stack_top = layout.stack_top().value;
    peb.stack_size = layout.stack_size();
    peb.image_addr = layout.image().value;
    peb.image_size = layout.image_size();
    memory.write(layout.peb(), peb);

    const int signal = install_interrupt_signal(config.interrupt_signal_offset);
    auto shared = std::make_shared<sandbox_image>(
        sandbox_image{layout, std::move(regions), layout.image() + image.entry_offset(), setup, guest_hash, signal});
    auto core = std::unique_ptr<sandbox_core>(new sandbox_core(std::move(shared), std::move(memory)));
    core->populated_count_ = core->populated_.merge(core->memory_.host_written());
    core->memory_.clear_host_written();
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

void sandbox_core::initialize() {
    create_vm();
    enter(HL_OP_INIT);
}

return_value sandbox_core::call(std::string_view name, value_type return_type, std::span<const argument> args,
                                std::chrono::nanoseconds timeout) {
    check_not_in_callback("call its guest");
    if (poisoned()) {
        throw error(errc::poisoned, util::strfmt("cannot call '%s': the sandbox is poisoned (%s); restore it first",
                                                 util::name_for_message(name).c_str(), poison_reason_.c_str()));
    }
    const auto message = protocol::encode_call(builder_, name, return_type, args);
    const std::uint64_t capacity = layout_.input_size() - HL_BUFFER_HEADER_SIZE;
    if (message.size() > capacity) {
        throw error(errc::argument_too_large,
                    util::strfmt("the call to '%s' is %zu bytes serialized; the input buffer holds %llu "
                                 "(raise sandbox_config::input_buffer_size)",
                                 util::name_for_message(name).c_str(), message.size(),
                                 static_cast<unsigned long long>(capacity)));
    }
    memory_.write(layout_.input(), hl_buffer_header{message.size()});
    memory_.write_bytes(layout_.input() + HL_BUFFER_HEADER_SIZE, message);
    if (builder_.GetSize() > builder_keep_limit) builder_.Reset();

    enter(HL_OP_DISPATCH, timeout);
    return read_result(name, return_type);
}

return_value sandbox_core::read_result(std::string_view name, value_type return_type) {
    const auto size = memory_.read<hl_buffer_header>(layout_.output()).size;
    if (size > layout_.output_size() - HL_BUFFER_HEADER_SIZE) {
        poison_and_throw(errc::protocol_error,
                         util::strfmt("the guest reported a %llu-byte result in a %llu-byte output buffer",
                                      static_cast<unsigned long long>(size),
                                      static_cast<unsigned long long>(layout_.output_size())));
    }
    protocol::call_result result;
    try {
        result = protocol::decode_result(memory_.span(layout_.output() + HL_BUFFER_HEADER_SIZE, size));
    } catch (const error& e) {
        poison_and_throw(errc::protocol_error, e.what());
    }
    if (result.error) {
        const auto& e = *result.error;
        const errc code = errc_for(e.kind);
        if (code == errc::protocol_error) poison_and_throw(code, "the guest could not read the call: " + e.message);
        if (code == errc::guest_error) {
            throw error(code, util::strfmt("guest function '%s' failed with code %d: %s",
                                           util::name_for_message(name).c_str(), e.code, e.message.c_str()));
        }
        throw error(code, e.message);
    }
    if (type_of(result.value) != return_type) {
        poison_and_throw(errc::protocol_error,
                         util::strfmt("'%s' returned %s where %s was asked for", util::name_for_message(name).c_str(),
                                      type_name(type_of(result.value)), type_name(return_type)));
    }
    return std::move(result.value);
}

void sandbox_core::enter(std::uint64_t op, std::chrono::nanoseconds timeout) {
    vmm::registers r;
    r.rip = image_->entry.value;
    r.rsp = layout_.stack_top().value - 8;  // as if called: the ABI wants rsp + 8 16-byte aligned
    r.rdi = layout_.peb().value;
    r.rsi = op;
    r.rflags = rflags_reserved;
    vm_->set_registers(r);

    call_guard guard(*interrupt_, timeout.count() > 0 ? &deadline_ : nullptr, timeout);
    for (;;) {
        if (abandoned()) {
            poison_and_throw(errc::usage_error, "the sandbox was destroyed inside one of its own host functions or "
                                                "handlers; its call ends here");
        }
        switch (guard.stop_reason()) {
        case call_guard::reason::none: break;
        case call_guard::reason::cancelled: poison_and_throw(errc::cancelled, "the guest call was cancelled by the host");
        case call_guard::reason::timed_out:
            poison_and_throw(errc::timed_out,
                             util::strfmt("the guest call exceeded its deadline of %.3f ms", timeout.count() / 1e6));
        }
        guard.entering_guest();
        vmm::vm_exit exit;
        try {
            exit = vm_->run();
        } catch (const std::system_error& e) {
            guard.left_guest();
            poison_and_throw(errc::vm_error, std::string("KVM_RUN failed: ") + e.what());
        }
        guard.left_guest();
        switch (exit.what) {
        case vmm::vm_exit::kind::io_out:
            if (exit.port == HL_PORT_DONE) {
                if (exit.value != HL_STATUS_OK) {
                    poison_and_throw(errc::guest_aborted,
                                     util::strfmt("the guest reported failure status %u", exit.value));
                }
                return;
            }
            if (exit.port == HL_PORT_HOST_CALL) {
                serve_host_call();
                continue;
            }
            if (exit.port == HL_PORT_OUTPUT) {
                deliver_output(exit.value);
                continue;
            }
            if (exit.port == HL_PORT_ABORT) throw_abort(exit.value);
            poison_and_throw(errc::protocol_error,
                             util::strfmt("the guest wrote 0x%x to I/O port 0x%x, which the library does not serve",
                                          exit.value, exit.port));
        case vmm::vm_exit::kind::shutdown: throw_fault();
        case vmm::vm_exit::kind::interrupted: continue;  // stop_reason() tells why, or it was a stray signal
        case vmm::vm_exit::kind::io_in:
            settle_vcpu();
            poison_and_throw(errc::protocol_error, util::strfmt("the guest read from I/O port 0x%x", exit.port));
        case vmm::vm_exit::kind::mmio:
            settle_vcpu();
            poison_and_throw(errc::guest_fault, util::strfmt("the guest accessed unbacked physical address 0x%llx",
                                                             static_cast<unsigned long long>(exit.address)));
        case vmm::vm_exit::kind::internal_error:
            poison_and_throw(errc::vm_error, util::strfmt("KVM internal error (suberror %u) at rip 0x%llx", exit.detail,
                                                          static_cast<unsigned long long>(vm_->regs().rip)));
        case vmm::vm_exit::kind::other:
            poison_and_throw(errc::vm_error, util::strfmt("unexpected KVM exit reason %u", exit.detail));
        }
    }
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
    if (in_callback_) {
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

void sandbox_core::throw_abort(std::uint32_t code) {
    const auto size = memory_.read<hl_buffer_header>(layout_.output()).size;
    const std::uint64_t room = layout_.output_size() - HL_BUFFER_HEADER_SIZE;
    const auto text = memory_.span(layout_.output() + HL_BUFFER_HEADER_SIZE, std::min<std::uint64_t>({size, room, max_abort_message}));
    std::string message(reinterpret_cast<const char*>(text.data()), text.size());
    poison_and_throw(errc::guest_aborted, util::strfmt("the guest aborted with code 0x%x: %s", code, message.c_str()));
}

void sandbox_core::throw_fault() {
    fault_context ctx;
    const vmm::registers r = vm_->regs();
    vmm::vm::fault_registers f;
    try {
        f = vm_->read_fault_registers();
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the guest faulted and its state could not be read: ") + e.what());
    }
    ctx.cpu = {r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11,
               r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags, f.cr2, f.fs_base, f.gs_base};
    ctx.page = [this](std::uint64_t address) {
        page_info info;
        if (const auto* region = region_at(mem::gpa{address})) {
            info.present = mem::has(region->access, mem::perms::read);
            info.user = mem::has(region->access, mem::perms::user);
            info.writable = mem::has(region->access, mem::perms::write);
            info.executable = mem::has(region->access, mem::perms::execute);
        }
        return info;
    };
    ctx.read = [this, page = ctx.page](std::uint64_t address, std::span<std::byte> out) {
        std::size_t n = 0;
        while (n < out.size()) {
            const auto info = page(address + n);
            if (!info.present || !info.user) break;
            const std::uint64_t in_page = mem::page_size - ((address + n) % mem::page_size);
            const std::size_t chunk = std::min<std::size_t>(out.size() - n, in_page);
            const auto src = memory_.span(mem::gpa{address + n}, chunk);
            std::memcpy(out.data() + n, src.data(), chunk);
            n += chunk;
        }
        return n;
    };
    ctx.describe = [this](std::uint64_t address) { return describe(address); };
    ctx.stack_guard_begin = layout_.stack_guard().value;
    ctx.stack_guard_end = layout_.stack().value;
    ctx.io_ports_begin = HL_PORT_FIRST;
    ctx.io_ports_end = HL_PORT_LAST + 1;

    fault_report report;
    try {
        report = classify_fault(ctx);
        vm_->reset_cpu();
    } catch (const std::exception& e) {
        poison_and_throw(errc::vm_error, std::string("the guest faulted and its state could not be read: ") + e.what());
    }
    poison_and_throw(report.code, report.message);
}

const mem::region* sandbox_core::region_at(mem::gpa address) const noexcept {
    const auto& regions = image_->regions;
    auto it = std::upper_bound(regions.begin(), regions.end(), address,
                               [](mem::gpa a, const mem::region& r) { return a < r.begin; });
    if (it == regions.begin()) return nullptr;
    --it;
    return it->contains(address) ? &*it : nullptr;
}

std::string sandbox_core::describe(std::uint64_t address) const {
    if (address < mem::page_size) return "null page";
    if (address >= layout_.stack_guard().value && address < layout_.stack().value) return "stack guard page";
    if (const auto* region = region_at(mem::gpa{address})) {
        return mem::has(region->access, mem::perms::user) ? region->name : "supervisor-only " + region->name;
    }
    if (address >= memory_.size()) return "outside guest memory";
    return "unmapped memory";
}

}  // namespace hl::detail
