// SPDX-License-Identifier: Apache-2.0
#include "mem/layout.hpp"

#include "hl/error.hpp"
#include "util/strfmt.hpp"

namespace hl::mem {
namespace {

constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

std::uint64_t checked_size(const char* field, std::uint64_t value, std::uint64_t min, std::uint64_t max) {
    if (value < min || value > max) {
        throw error(errc::invalid_config,
                    util::strfmt("sandbox_config::%s is %llu bytes; it must be between %llu and %llu bytes", field,
                                 (unsigned long long)value, (unsigned long long)min, (unsigned long long)max));
    }
    return page_round_up(value);
}

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept { return (a + b - 1) / b; }

}  // namespace

std::uint64_t page_table_pages_for(std::uint64_t bytes) noexcept {
    const std::uint64_t pages = ceil_div(bytes, page_size);
    const std::uint64_t pts = ceil_div(pages, 512);
    const std::uint64_t pds = ceil_div(pts, 512);
    const std::uint64_t pdpts = ceil_div(pds, 512);
    return 1 + pdpts + pds + pts;
}

layout layout::compute(const sandbox_config& config, std::uint64_t image_size, std::uint64_t kernel_state_size) {
    layout l;
    l.heap_size_ = checked_size("heap_size", config.heap_size, 4 * KiB, 16 * GiB);
    l.stack_size_ = checked_size("stack_size", config.stack_size, 8 * KiB, 1 * GiB);
    // Below 2 GiB: FlatBuffers' Verifier asserts on larger buffers.
    l.input_size_ = checked_size("input_buffer_size", config.input_buffer_size, 4 * KiB, 1 * GiB);
    l.output_size_ = checked_size("output_buffer_size", config.output_buffer_size, 4 * KiB, 1 * GiB);
    if (image_size == 0 || image_size > 1 * GiB) {
        throw error(errc::invalid_guest, util::strfmt("the guest image is %llu bytes; it must be 1 byte .. 1 GiB",
                                                       (unsigned long long)image_size));
    }
    l.image_size_ = page_round_up(image_size);

    l.gdt_ = gpa{page_size};
    l.tss_ = l.gdt_ + page_size;
    l.peb_ = l.tss_ + page_size;
    l.entry_stub_ = l.peb_ + page_size;
    l.register_image_ = l.entry_stub_ + page_size;
    l.kernel_state_ = l.register_image_ + page_size;
    l.kernel_state_size_ = page_round_up(kernel_state_size);
    l.page_tables_ = l.kernel_state_ + l.kernel_state_size_;

    // Everything above the page tables, then the page tables that map it all: the count depends on the
    // total, which depends on the count, so grow until it is stable (two rounds at most in practice).
    const std::uint64_t above = l.image_size_ + l.heap_size_ + l.input_size_ + l.output_size_ + page_size +
                                l.stack_size_;
    std::uint64_t pt_pages = 1;
    while (page_table_pages_for(l.page_tables_.value + pt_pages * page_size + above) > pt_pages) {
        pt_pages = page_table_pages_for(l.page_tables_.value + pt_pages * page_size + above);
    }
    l.page_table_pages_ = pt_pages;

    l.image_ = l.page_tables_ + pt_pages * page_size;
    l.heap_ = l.image_ + l.image_size_;
    l.input_ = l.heap_ + l.heap_size_;
    l.output_ = l.input_ + l.input_size_;
    l.stack_guard_ = l.output_ + l.output_size_;
    l.stack_ = l.stack_guard_ + page_size;
    l.total_size_ = l.stack_top().value;
    return l;
}

std::vector<region> layout::fixed_regions() const {
    const perms user_rw = perms::user | perms::read | perms::write;
    std::vector<region> out{
        {"GDT", gdt_, page_size, perms::read | perms::write},
        {"TSS", tss_, page_size, perms::read | perms::write},
        {"PEB", peb_, page_size, perms::user | perms::read},
        {"entry stub", entry_stub_, page_size, perms::user | perms::read | perms::execute},
        {"register image", register_image_, page_size, perms::user | perms::read},
    };
    if (kernel_state_size_ != 0) out.push_back({"kernel state", kernel_state_, kernel_state_size_, perms::read | perms::write});
    out.insert(out.end(), {
        {"page tables", page_tables_, page_table_pages_ * page_size, perms::read | perms::write},
        {"heap", heap_, heap_size_, user_rw},
        {"input buffer", input_, input_size_, perms::user | perms::read},
        {"output buffer", output_, output_size_, user_rw},
        {"stack", stack_, stack_size_, user_rw},
    });
    return out;
}

}  // namespace hl::mem
