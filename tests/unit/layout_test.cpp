// SPDX-License-Identifier: Apache-2.0
#include "mem/layout.hpp"

#include <gtest/gtest.h>

#include "hl/error.hpp"

namespace {

using hl::mem::layout;
using hl::mem::page_size;

TEST(Layout, PlacesEveryRegionPageAlignedInOrderWithoutOverlap) {
    const auto l = layout::compute({}, 3 * page_size + 5);
    EXPECT_EQ(l.gdt().value, page_size);  // page 0 stays unmapped
    EXPECT_EQ(l.image_size(), 4 * page_size);
    const hl::mem::gpa order[] = {l.gdt(), l.tss(), l.peb(), l.entry_stub(), l.register_image(), l.page_tables(),
                                  l.image(), l.heap(), l.input(), l.output(), l.stack_guard(), l.stack()};
    for (std::size_t i = 0; i + 1 < std::size(order); ++i) {
        EXPECT_LT(order[i], order[i + 1]) << i;
        EXPECT_EQ(order[i].value % page_size, 0u) << i;
    }
    EXPECT_EQ(l.stack() - l.stack_guard(), page_size);
    EXPECT_EQ(l.total_size(), l.stack_top().value);
}

TEST(Layout, UsesHyperlightsDefaults) {
    const auto l = layout::compute({}, page_size);
    EXPECT_EQ(l.heap_size(), 128u * 1024);
    EXPECT_EQ(l.input_size(), 16u * 1024);
    EXPECT_EQ(l.output_size(), 16u * 1024);
}

TEST(Layout, RoundsSizesUpToWholePages) {
    hl::sandbox_config c;
    c.heap_size = 100'000;
    const auto l = layout::compute(c, page_size);
    EXPECT_EQ(l.heap_size(), 25 * page_size);
}

TEST(Layout, HasEnoughPageTablesToMapAQuarterGibibyteHeap) {
    hl::sandbox_config c;
    c.heap_size = 256u << 20;
    const auto l = layout::compute(c, page_size);
    EXPECT_GE(l.page_table_pages(), hl::mem::page_table_pages_for(l.total_size()));
    EXPECT_GE(l.page_table_pages(), (256u << 20) / page_size / 512);
}

// The entry stub is the one fixed region the guest may execute: host-written code, read-only to it.
TEST(Layout, SupervisorRegionsAreNotUserAccessibleAndOnlyTheEntryStubIsExecutable) {
    const auto l = layout::compute({}, page_size, 3 * page_size);
    for (const auto& r : l.fixed_regions()) {
        const bool supervisor = r.name == "GDT" || r.name == "TSS" || r.name == "page tables" || r.name == "kernel state";
        EXPECT_EQ(hl::mem::has(r.access, hl::mem::perms::user), !supervisor) << r.name;
        EXPECT_EQ(hl::mem::has(r.access, hl::mem::perms::execute), r.name == "entry stub") << r.name;
    }
}

TEST(Layout, MakesTheInputBufferPebEntryStubAndRegisterImageReadOnlyToTheGuest) {
    const auto l = layout::compute({}, page_size);
    int read_only = 0;
    for (const auto& r : l.fixed_regions()) {
        if (r.name == "input buffer" || r.name == "PEB" || r.name == "entry stub" || r.name == "register image") {
            EXPECT_FALSE(hl::mem::has(r.access, hl::mem::perms::write)) << r.name;
            ++read_only;
        }
    }
    EXPECT_EQ(read_only, 4);
}

TEST(Layout, PutsTheRegisterImageOnThePageAfterTheEntryStub) {
    const auto l = layout::compute({}, page_size);
    EXPECT_EQ(l.register_image() - l.entry_stub(), page_size);  // write_entry_stub() relies on it
}

void expect_invalid(const hl::sandbox_config& c, const char* field) {
    try {
        (void)layout::compute(c, page_size);
        FAIL() << "accepted " << field;
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), hl::errc::invalid_config);
        EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
}

TEST(Layout, RejectsSizesOutOfRangeNamingTheField) {
    hl::sandbox_config c;
    c.heap_size = 0;
    expect_invalid(c, "heap_size");
    c = {};
    c.heap_size = ~0ull;
    expect_invalid(c, "heap_size");
    c = {};
    c.stack_size = 100;
    expect_invalid(c, "stack_size");
    c = {};
    c.input_buffer_size = 1;
    expect_invalid(c, "input_buffer_size");
    c = {};
    c.output_buffer_size = (5ull << 30);
    expect_invalid(c, "output_buffer_size");
}

TEST(Layout, RejectsAnEmptyOrHugeImage) {
    EXPECT_THROW((void)layout::compute({}, 0), hl::error);
    EXPECT_THROW((void)layout::compute({}, 2ull << 30), hl::error);
}

}  // namespace
