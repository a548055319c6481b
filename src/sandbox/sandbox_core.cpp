// SPDX-License-Identifier: Apache-2.0
#include "sandbox/sandbox_core.hpp"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "hl/abi/hl_abi.h"
#include "loader/elf_image.hpp"
#include "sandbox/fault.hpp"
#include "util/strfmt.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::detail {
namespace {

constexpr std::size_t max_abort_message = 4096;

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
