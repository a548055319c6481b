// SPDX-License-Identifier: Apache-2.0
#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;

hl::multi_use_sandbox make(const char* guest = hl::test::simpleguest(), hl::sandbox_config config = {}) {
    auto u = hl::uninitialized_sandbox::from_file(guest, config);
    u.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a + b; });
    return std::move(u).evolve();
}

long resident_pages() {
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return resident;
}

class Snapshot : public ::testing::Test {
protected:
    void SetUp() override { HL_REQUIRE_KVM(); }
};

TEST_F(Snapshot, RestoreResetsAGlobalCounter) {
    auto sb = make();
    auto snap = sb.snapshot();
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 2);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1);
}

TEST_F(Snapshot, RestoreForgetsHeapAllocations) {
    auto sb = make();
    auto snap = sb.snapshot();
    sb.call<void>("StoreSecret", std::string("the launch codes"));
    EXPECT_EQ(sb.call<std::string>("GetSecret"), "the launch codes");
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::string>("GetSecret"), "");
}

TEST_F(Snapshot, RestoreClearsWhatAnEarlierCallLeftInTheOutputBuffer) {
    auto sb = make();
    auto snap = sb.snapshot();
    sb.call<std::string>("Echo", std::string("TOPSECRET-OUTPUT"));
    EXPECT_TRUE(sb.call<bool>("OutputBufferContains", std::string("TOPSECRET-OUTPUT"))) << "the test must be able to fail";
    sb.call<std::string>("Echo", std::string("TOPSECRET-OUTPUT"));
    sb.restore(snap);
    EXPECT_FALSE(sb.call<bool>("OutputBufferContains", std::string("TOPSECRET-OUTPUT")));
}

TEST_F(Snapshot, RestoreClearsWhatAnEarlierCallLeftInTheInputBuffer) {
    auto sb = make();
    auto snap = sb.snapshot();
    // The needle sits at the end of a long string, past where the next (short) call's message ends.
    const std::string secret = std::string(5000, 's') + "SECRET-INPUT";
    sb.call<std::string>("Echo", secret);
    EXPECT_TRUE(sb.call<bool>("InputBufferTailContains", std::string("SECRET-INPUT"))) << "the test must be able to fail";
    sb.call<std::string>("Echo", secret);
    sb.restore(snap);
    EXPECT_FALSE(sb.call<bool>("InputBufferTailContains", std::string("SECRET-INPUT")));
}

TEST_F(Snapshot, RestoreResetsSseRegistersAndMxcsr) {
    auto sb = make();
    const std::string clean = sb.call<std::string>("GetFpuState");
    auto snap = sb.snapshot();
    sb.call<void>("SetFpuState", std::uint64_t{0x1122334455667788});
    const std::string dirty = sb.call<std::string>("GetFpuState");
    EXPECT_NE(dirty, clean) << "FPU state survives between calls: the test must be able to fail";
    EXPECT_NE(dirty.find("1122334455667788"), std::string::npos) << dirty;
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::string>("GetFpuState"), clean);
}

TEST_F(Snapshot, RestoresASnapshotTakenAfterSeveralCalls) {
    auto sb = make();
    for (int i = 0; i < 5; ++i) sb.call<std::int32_t>("IncrementCounter");
    sb.call<void>("StoreSecret", std::string("kept"));
    auto snap = sb.snapshot();
    sb.call<std::int32_t>("IncrementCounter");
    sb.call<void>("StoreSecret", std::string("changed"));
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 6);
    EXPECT_EQ(sb.call<std::string>("GetSecret"), "kept");
}

TEST_F(Snapshot, SwitchesBetweenTwoSnapshotsOfTheSameSandbox) {
    auto sb = make();
    auto a = sb.snapshot();
    sb.call<void>("StoreSecret", std::string("b"));
    sb.call<std::int32_t>("IncrementCounter");
    auto b = sb.snapshot();
    sb.call<void>("StoreSecret", std::string("c"));
    for (int round = 0; round < 3; ++round) {
        sb.restore(a);
        EXPECT_EQ(sb.call<std::string>("GetSecret"), "");
        EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1);
        sb.restore(b);
        EXPECT_EQ(sb.call<std::string>("GetSecret"), "b");
        EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 2);
    }
}

TEST_F(Snapshot, RestoreMakesASandboxUsableAfterEveryKindOfFaultAndAnAbort) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (const char* f : {"ReadNull", "WriteNull", "InvalidOpcode", "StackOverflow", "WriteToCode", "ExecuteHeap"}) {
        EXPECT_THROW(sb.call_dynamic(f, std::string(f) == "ReadNull" || std::string(f) == "StackOverflow"
                                            ? hl::value_type::int32
                                            : hl::value_type::void_type,
                                     {}),
                     hl::error)
            << f;
        EXPECT_TRUE(sb.poisoned()) << f;
        sb.restore(snap);
        EXPECT_FALSE(sb.poisoned()) << f;
        EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1) << f;
        EXPECT_EQ(sb.call<std::string>("Echo", std::string("alive")), "alive") << f;
        sb.restore(snap);
    }
    EXPECT_THROW(sb.call<std::int32_t>("DivideByZero", 1, 0), hl::error);
    sb.restore(snap);
    EXPECT_THROW(sb.call<void>("Abort", 3, std::string("bye")), hl::error);
    EXPECT_TRUE(sb.poisoned());
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("AddLocal", 2, 2), 4);
}

TEST_F(Snapshot, TenThousandCallAndRestoreCyclesKeepMemoryAndDescriptorsStable) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (int i = 0; i < 200; ++i) ASSERT_EQ(sb.call_with_restore<std::int32_t>(snap, "IncrementCounter"), 1);
    const int fds = hl::test::open_fd_count();
    const long rss = resident_pages();
    for (int i = 0; i < 10'000; ++i) {
        ASSERT_EQ(sb.call_with_restore<std::int32_t>(snap, "IncrementCounter"), 1) << i;
    }
    EXPECT_EQ(hl::test::open_fd_count(), fds);
    EXPECT_LE(resident_pages(), rss + 256) << "RSS grew by more than 1 MiB over 10,000 cycles";
}

TEST_F(Snapshot, CallWithRestoreRestoresEvenWhenTheCallFails) {
    auto sb = make();
    sb.call<std::int32_t>("IncrementCounter");
    auto snap = sb.snapshot();
    EXPECT_THROW(sb.call_with_restore<void>(snap, "WriteNull"), hl::error);
    EXPECT_FALSE(sb.poisoned());
    EXPECT_EQ(sb.call_with_restore<std::int32_t>(snap, "IncrementCounter"), 2);
    EXPECT_EQ(sb.call_with_restore<std::int32_t>(snap, "IncrementCounter"), 2);
}

TEST_F(Snapshot, FiftySandboxesFromOneSnapshotAreIsolatedFromEachOther) {
    auto origin = make();
    origin.call<void>("StoreSecret", std::string("shared start"));
    auto snap = origin.snapshot();
    std::vector<hl::multi_use_sandbox> boxes;
    for (int i = 0; i < 50; ++i) boxes.push_back(hl::multi_use_sandbox::from_snapshot(snap));
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(boxes[i].call<std::string>("GetSecret"), "shared start") << i;
        boxes[i].call<void>("StoreSecret", "secret of " + std::to_string(i));
        for (int k = 0; k <= i % 3; ++k) boxes[i].call<std::int32_t>("IncrementCounter");
    }
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(boxes[i].call<std::string>("GetSecret"), "secret of " + std::to_string(i)) << i;
        EXPECT_EQ(boxes[i].call<std::int32_t>("IncrementCounter"), i % 3 + 2) << i;
    }
    EXPECT_EQ(origin.call<std::string>("GetSecret"), "shared start");
    boxes[7].restore(snap);
    EXPECT_EQ(boxes[7].call<std::string>("GetSecret"), "shared start");
    EXPECT_EQ(boxes[8].call<std::string>("GetSecret"), "secret of 8");
}

TEST_F(Snapshot, SandboxesFromASnapshotNeedTheirHostFunctionsBound) {
    auto snap = make().snapshot();
    auto sb = hl::multi_use_sandbox::from_snapshot(snap);
    EXPECT_EQ(sb.call<std::string>("HandleHostError", std::string("HostAdd")),
              "handled: the guest called host function 'HostAdd', which the host has not registered");
    sb.register_host_function("HostAdd", [](std::int32_t a, std::int32_t b) { return a * 100 + b; });
    EXPECT_EQ(sb.call<std::int32_t>("Add", 1, 2), 102);
}

TEST_F(Snapshot, OutlivesItsSandbox) {
    std::shared_ptr<const hl::snapshot> snap;
    {
        auto sb = make();
        sb.call<void>("StoreSecret", std::string("from a dead sandbox"));
        snap = sb.snapshot();
    }
    auto sb = hl::multi_use_sandbox::from_snapshot(snap);
    EXPECT_EQ(sb.call<std::string>("GetSecret"), "from a dead sandbox");
    auto other = make();
    other.restore(snap);
    EXPECT_EQ(other.call<std::string>("GetSecret"), "from a dead sandbox");
}

TEST_F(Snapshot, OfAnotherGuestIsRejectedAndChangesNothing) {
    auto cpp = make();
    auto c = make(hl::test::c_simpleguest());
    auto c_snap = c.snapshot();
    cpp.call<std::int32_t>("IncrementCounter");
    try {
        cpp.restore(c_snap);
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::snapshot_mismatch) << e.what();
    }
    EXPECT_EQ(cpp.call<std::int32_t>("IncrementCounter"), 2);
}

TEST_F(Snapshot, OfAnotherMemoryLayoutIsRejected) {
    hl::sandbox_config big;
    big.heap_size = 8 << 20;
    auto small = make();
    auto large = make(hl::test::simpleguest(), big);
    EXPECT_THROW(small.restore(large.snapshot()), hl::error);
    EXPECT_FALSE(small.poisoned());
}

TEST_F(Snapshot, OfAnotherSandboxOfTheSameGuestAndLayoutIsAccepted) {
    auto a = make();
    auto b = make();
    a.call<void>("StoreSecret", std::string("from a"));
    b.restore(a.snapshot());
    EXPECT_EQ(b.call<std::string>("GetSecret"), "from a");
}

TEST_F(Snapshot, CannotBeTakenOfAPoisonedSandbox) {
    auto sb = make();
    EXPECT_THROW(sb.call<void>("WriteNull"), hl::error);
    try {
        (void)sb.snapshot();
        FAIL();
    } catch (const hl::error& e) {
        EXPECT_EQ(e.code(), errc::poisoned) << e.what();
    }
}

TEST_F(Snapshot, OfASandboxCreatedFromASnapshotWorks) {
    auto origin = make();
    auto first = origin.snapshot();
    auto child = hl::multi_use_sandbox::from_snapshot(first);
    child.call<void>("StoreSecret", std::string("child state"));
    auto second = child.snapshot();
    child.call<void>("StoreSecret", std::string("later"));
    child.restore(second);
    EXPECT_EQ(child.call<std::string>("GetSecret"), "child state");
    child.restore(first);
    EXPECT_EQ(child.call<std::string>("GetSecret"), "");
    auto grandchild = hl::multi_use_sandbox::from_snapshot(second);
    EXPECT_EQ(grandchild.call<std::string>("GetSecret"), "child state");
}

TEST_F(Snapshot, StoresOnlyPagesThatWereWritten) {
    hl::sandbox_config config;
    config.heap_size = 256u << 20;
    auto sb = make(hl::test::simpleguest(), config);
    auto snap = sb.snapshot();
    EXPECT_GT(snap->memory_size(), 256u << 20);
    EXPECT_LT(snap->stored_bytes(), 4u << 20) << "a fresh 256 MiB sandbox has only a few pages written";
}

TEST_F(Snapshot, RestoreWorksWithQuarterGibibyteHeaps) {
    hl::sandbox_config config;
    config.heap_size = 256u << 20;
    auto sb = make(hl::test::simpleguest(), config);
    sb.call<std::int32_t>("DirtyPages", 256);
    auto snap = sb.snapshot();
    for (int i = 0; i < 20; ++i) {
        sb.call<std::int32_t>("DirtyPages", 256);
        sb.call<void>("StoreSecret", std::string("x"));
        sb.restore(snap);
        ASSERT_EQ(sb.call<std::string>("GetSecret"), "");
        sb.restore(snap);
    }
}

// simpleguest with its last (data) segment's bss grown so that the image ends just under 1 GiB: the
// shape of a small file that asks for a huge zero-filled segment.
std::vector<std::byte> simpleguest_with_bss_up_to(std::uint64_t image_end) {
    std::ifstream in(hl::test::simpleguest(), std::ios::binary);
    const std::vector<char> raw{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<std::byte> elf(raw.size());
    std::memcpy(elf.data(), raw.data(), raw.size());
    Elf64_Ehdr header;
    std::memcpy(&header, elf.data(), sizeof header);
    std::size_t last = 0;
    Elf64_Phdr last_load{};
    for (std::size_t i = 0; i < header.e_phnum; ++i) {
        Elf64_Phdr p;
        std::memcpy(&p, elf.data() + header.e_phoff + i * sizeof p, sizeof p);
        if (p.p_type == PT_LOAD && p.p_vaddr >= last_load.p_vaddr) {
            last = i;
            last_load = p;
        }
    }
    EXPECT_TRUE(last_load.p_flags & PF_W) << "simpleguest's last PT_LOAD is expected to hold data and bss";
    last_load.p_memsz = image_end - last_load.p_vaddr;
    std::memcpy(elf.data() + header.e_phoff + last * sizeof last_load, &last_load, sizeof last_load);
    return elf;
}

TEST_F(Snapshot, OfAGuestWithANearlyGibibyteBssStoresOnlyThePagesThatHoldData) {
    const auto elf = simpleguest_with_bss_up_to((1u << 30) - (64u << 10));
    ASSERT_LT(elf.size(), 4u << 20);
    const long resident_before = resident_pages();
    auto u = hl::uninitialized_sandbox::from_bytes(elf);
    auto sb = std::move(u).evolve();
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 1) << "the guest's bss starts out zero";
    auto snap = sb.snapshot();
    EXPECT_GT(snap->memory_size(), 1u << 30);
    EXPECT_LT(snap->stored_bytes(), 16u << 20) << "the zero-filled pages of the bss are not stored";
    EXPECT_LT((resident_pages() - resident_before) * 4096, 64l << 20) << "nor touched by the host";

    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 2);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int32_t>("IncrementCounter"), 2);
    auto again = sb.snapshot();
    EXPECT_LT(again->stored_bytes(), 16u << 20);
    auto child = hl::multi_use_sandbox::from_snapshot(snap);
    EXPECT_EQ(child.call<std::int32_t>("IncrementCounter"), 2);
}

}  // namespace
