// SPDX-License-Identifier: Apache-2.0
#include "sandbox/sandbox_image.hpp"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

#include "hl/abi/hl_abi.h"
#include "hl/error.hpp"
#include "hl/log.hpp"
#include "loader/elf_image.hpp"
#include "sandbox/interrupt.hpp"
#include "sandbox/linux_process.hpp"
#include "util/strfmt.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::detail {
namespace {

// Below this, glibc's start-up allocations fail and it dies in its own error path.
constexpr std::uint64_t min_linux_heap = 1u << 20;

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

hl_peb make_peb(const mem::layout& layout) {
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
    return peb;
}

// The entry stub is entered only after a restore, and a snapshot writes its own registers here
// (sandbox_core::take_snapshot()); until then, the registers' initial state: nothing held, so every
// component starts clean, and the default MXCSR, which xrstor loads regardless.
void write_initial_register_image(mem::guest_memory& memory, mem::gpa at) {
    std::array<std::byte, sizeof(vmm::saved_cpu::xsave)> image{};
    constexpr std::uint32_t default_mxcsr = 0x1f80;
    std::memcpy(image.data() + 24, &default_mxcsr, sizeof default_mxcsr);  // the legacy region's MXCSR
    vmm::x86_64::write_register_image(memory, at, image, /*xcr0=*/0);  // holds no component
}

}  // namespace

sandbox_image::built sandbox_image::build(std::vector<std::byte> elf, const sandbox_config& config) {
    if (config.call_limits.timeout.count() < 0 || config.call_limits.cpu_time.count() < 0) {
        throw error(errc::invalid_config, "sandbox_config::call_limits holds a negative duration; 0 means no limit");
    }
    // The file, not the loaded image: hashing the image would read (and so allocate) every page of
    // its bss.
    const std::uint64_t guest_hash = hash_bytes(elf);
    const auto image = loader::elf_image::parse(std::move(elf));
    const bool linux_program = image.kind() == loader::guest_kind::linux_program;
    if (linux_program && config.heap_size < min_linux_heap) {
        throw error(errc::invalid_config,
                    util::strfmt("heap_size is %llu bytes, and this guest is a Linux program (the SDK's glibc or "
                                 "musl flavour), whose libc's malloc starts with requests of about 1 MiB: set "
                                 "sandbox_config::heap_size to at least %llu (a few MiB is typical)",
                                 static_cast<unsigned long long>(config.heap_size),
                                 static_cast<unsigned long long>(min_linux_heap)));
    }
    auto layout = mem::layout::compute(config, image.image_size());  // validates the heap size first
    auto core_dumps = core_dump_settings::from(config);
    if (linux_program) {
        layout = mem::layout::compute(config, image.image_size(), linux_kernel::state_bytes_for(layout.heap_size()));
    }
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
    memory.write(layout.peb(), make_peb(layout));
    const mem::gpa entry = layout.image() + image.entry_offset();
    vmm::x86_64::write_entry_stub(memory, layout.entry_stub(), layout.register_image(), entry);
    write_initial_register_image(memory, layout.register_image());

    const int signal = install_interrupt_signal(config.interrupt_signal_offset);
    const mem::gpa program_headers = image.phdr_offset() != 0 ? layout.image() + image.phdr_offset() : mem::gpa{};
    auto shared = std::make_shared<sandbox_image>(
        sandbox_image{layout, std::move(regions), entry, image.kind(), layout.stack_top(), layout.stack_top(), setup,
                      guest_hash, signal, program_headers, image.phdr_count(), std::move(core_dumps),
                      config.call_limits, config.measure_cpu_time, config.metrics, config.trace});
    if (linux_program) {
        const auto stack = write_start_stack(memory, layout, image);
        shared->start_stack = stack.argc;
        shared->call_stack_top = stack.call_stack_top;
        auto view = kernel_view(memory, *shared);
        linux_kernel::initialize(view);
    }
    return {std::move(shared), std::move(memory)};
}

const mem::region* sandbox_image::region_at(mem::gpa address) const noexcept {
    auto it = std::upper_bound(regions.begin(), regions.end(), address,
                               [](mem::gpa a, const mem::region& r) { return a < r.begin; });
    if (it == regions.begin()) return nullptr;
    --it;
    return it->contains(address) ? &*it : nullptr;
}

std::string sandbox_image::describe(std::uint64_t address) const {
    if (address < mem::page_size) return "null page";
    if (address >= layout.stack_guard().value && address < layout.stack().value) return "stack guard page";
    if (const auto* region = region_at(mem::gpa{address})) {
        return mem::has(region->access, mem::perms::user) ? region->name : "supervisor-only " + region->name;
    }
    if (address >= layout.total_size()) return "outside guest memory";
    return "unmapped memory";
}

fault_context sandbox_image::fault_view(const mem::guest_memory& memory, const cpu_state& cpu) const {
    fault_context ctx;
    ctx.cpu = cpu;
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
    ctx.read = [&memory, page = ctx.page](std::uint64_t address, std::span<std::byte> out) {
        std::size_t n = 0;
        while (n < out.size()) {
            const auto info = page(address + n);
            if (!info.present || !info.user) break;
            const std::uint64_t in_page = mem::page_size - ((address + n) % mem::page_size);
            const std::size_t chunk = std::min<std::size_t>(out.size() - n, in_page);
            const auto src = memory.span(mem::gpa{address + n}, chunk);
            std::memcpy(out.data() + n, src.data(), chunk);
            n += chunk;
        }
        return n;
    };
    ctx.describe = [this](std::uint64_t address) { return describe(address); };
    ctx.stack_guard_begin = layout.stack_guard().value;
    ctx.stack_guard_end = layout.stack().value;
    ctx.io_ports_begin = HL_PORT_FIRST;
    ctx.io_ports_end = HL_PORT_LAST + 1;
    return ctx;
}

core_request sandbox_image::core_view(const mem::guest_memory& memory, const core_thread& thread,
                                      std::optional<std::uint64_t> fault_address) const {
    core_request r{thread, memory, regions, {}, {}};
    const std::uint64_t stack_begin = layout.stack().value, stack_top = layout.stack_top().value;
    const std::uint64_t rsp = thread.cpu.rsp;
    if (rsp >= stack_begin && rsp < stack_top) r.wanted.push_back({rsp, stack_top});
    r.wanted.push_back({thread.cpu.rip, thread.cpu.rip + 1});
    if (fault_address) r.wanted.push_back({*fault_address, *fault_address + 1});
    r.wanted.push_back({layout.image().value, layout.image().value + layout.image_size()});
    r.wanted.push_back({stack_begin, stack_top});
    for (const mem::region& region : regions) r.wanted.push_back({region.begin.value, region.end().value});
    // AT_ENTRY tells a debugger where the position-independent guest was loaded; AT_PHDR lets it
    // check that against the program headers in memory.
    r.auxv = {{AT_PHDR, program_headers.value},
              {AT_PHENT, sizeof(Elf64_Phdr)},
              {AT_PHNUM, program_header_count},
              {AT_PAGESZ, mem::page_size},
              {AT_ENTRY, entry.value}};
    return r;
}

}  // namespace hl::detail
