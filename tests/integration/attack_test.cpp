// SPDX-License-Identifier: Apache-2.0
// Attacks on the promise that one task never sees, steers or forges the next: CPU state a task may
// leave behind past restore(), kills and deadlines around a half-done instruction, `in` inside a
// host call flow, and the dirty log's hot-page tracking. Each test states the attack; the
// expectation is the snapshot's state.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "hostile_support.hpp"

namespace {

using hl::errc;
using namespace std::chrono_literals;

constexpr std::int64_t secret = 0x5ec2'e7c0'ffee'1234;
using hl::test::canary_value;
using hl::test::expect_clean;

hl::multi_use_sandbox make() { return hl::test::make_hostile(); }

using Attack = hl::test::attack_test;

// ---- CPU state beyond the general registers ----

TEST_F(Attack, FpuAndSseStateDoNotReachTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto mxcsr = sb.call<std::int64_t>("ReadMxcsr");
    sb.restore(snap);
    const auto fcw = sb.call<std::int64_t>("ReadFcw");
    sb.restore(snap);
    const auto fsw = sb.call<std::int64_t>("ReadFsw");
    sb.restore(snap);
    const auto xmm15 = sb.call<std::int64_t>("ReadXmm15");
    sb.restore(snap);
    ASSERT_NE(xmm15, secret);

    for (const char* reader : {"ReadMxcsr", "ReadFcw", "ReadFsw", "ReadXmm15"}) {
        sb.call<void>("SetFpuState", secret);
        // Without a restore the same task sees its own state: the attack really changed something.
        if (std::string(reader) == "ReadXmm15") {
            EXPECT_EQ(sb.call<std::int64_t>(reader), secret);
        }
        sb.restore(snap);
        const auto seen = sb.call<std::int64_t>(reader);
        const std::string r = reader;
        EXPECT_EQ(seen, r == "ReadMxcsr" ? mxcsr : r == "ReadFcw" ? fcw : r == "ReadFsw" ? fsw : xmm15) << reader;
        sb.restore(snap);
    }
}

TEST_F(Attack, FpuStateDoesNotReachASandboxCreatedFromTheSnapshot) {
    auto sb = make();
    auto snap = sb.snapshot();
    sb.call<void>("SetFpuState", secret);
    auto twin = hl::multi_use_sandbox::from_snapshot(snap);
    EXPECT_NE(twin.call<std::int64_t>("ReadXmm15"), secret);
}

// AVX-512 registers that SSE/AVX state does not cover: zmm31's top quadword and the opmask k7, where
// the host has AVX-512 (the guest's XCR0 follows the host's).
TEST_F(Attack, Avx512StateDoesNotReachTheNextTaskOrAnotherSandbox) {
    auto sb = make();
    auto snap = sb.snapshot();
    std::error_code ec;
    sb.call<void>(ec, "SetAvx512State", secret);
    if (ec) GTEST_SKIP() << "this vCPU does not run AVX-512 at CPL3 (" << ec.message() << "): nothing to leak";
    EXPECT_EQ(sb.call<std::int64_t>("ReadZmm31High"), secret);  // the same task sees it
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int64_t>("ReadZmm31High"), 0);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int64_t>("ReadK7"), 0);
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int64_t>("ReadYmm14High"), 0);
    sb.restore(snap);

    sb.call<void>("SetAvx512State", secret);
    auto other = make();  // another VM on the same thread
    EXPECT_EQ(other.call<std::int64_t>("ReadZmm31High"), 0);
    EXPECT_EQ(other.call<std::int64_t>("ReadK7"), 0);
    auto twin = hl::multi_use_sandbox::from_snapshot(snap);
    EXPECT_EQ(twin.call<std::int64_t>("ReadZmm31High"), 0);
}

// A restore leaves the extended registers to the next call's entry stub, so right after one the vCPU
// still holds the last task's. A snapshot taken then must hold the restored registers all the same.
TEST_F(Attack, ASnapshotTakenRightAfterARestoreHoldsTheRestoredRegistersNotTheLastTasks) {
    auto sb = make();
    auto clean = sb.snapshot();
    const auto xmm15 = sb.call<std::int64_t>("ReadXmm15");
    sb.restore(clean);
    const auto mxcsr = sb.call<std::int64_t>("ReadMxcsr");
    sb.restore(clean);
    ASSERT_NE(xmm15, secret);
    std::error_code no_avx512;
    sb.call<void>("SetFpuState", secret);
    sb.call<void>(no_avx512, "SetAvx512State", secret);
    if (no_avx512) {  // its fault poisoned the sandbox
        sb.restore(clean);
        sb.call<void>("SetFpuState", secret);
    }
    sb.restore(clean);
    auto again = sb.snapshot();  // before any call
    sb.call<void>("SetFpuState", secret);
    auto twin = hl::multi_use_sandbox::from_snapshot(again);
    for (auto* box : {&sb, &twin}) {
        if (box == &sb) sb.restore(again);
        EXPECT_EQ(box->call<std::int64_t>("ReadXmm15"), xmm15);
        EXPECT_EQ(box->call<std::int64_t>("ReadMxcsr"), mxcsr);
        if (!no_avx512) {
            EXPECT_EQ(box->call<std::int64_t>("ReadZmm31High"), 0);
            EXPECT_EQ(box->call<std::int64_t>("ReadK7"), 0);
        }
    }
}

// The first call after a restore enters through the entry stub; deadlines this short stop many of
// those runs inside it, before or after its xrstor. Whatever the call's fate, the registers the next
// call sees, and those a snapshot takes, are the snapshot's.
TEST_F(Attack, CallsStoppedAroundTheEntryStubNeverLetTheLastTasksRegistersThrough) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto clean = sb.call<std::int64_t>("ReadXmm15");
    sb.restore(snap);
    ASSERT_NE(clean, secret);
    for (int i = 0; i < 200; ++i) {
        sb.call<void>("SetFpuState", secret);
        sb.restore(snap);
        bool finished = true;
        try {
            sb.call_for<std::int64_t>(std::chrono::nanoseconds(1 + (i % 50) * 1000), "ReadXmm15");
        } catch (const hl::error& e) {
            EXPECT_EQ(e.code(), errc::timed_out) << e.what();
            finished = false;
        }
        if (finished) {
            auto again = sb.snapshot();
            EXPECT_EQ(hl::multi_use_sandbox::from_snapshot(again).call<std::int64_t>("ReadXmm15"), clean) << i;
        }
        sb.restore(snap);
        EXPECT_EQ(sb.call<std::int64_t>("ReadXmm15"), clean) << i;
        sb.restore(snap);
    }
}

// Another sandbox's snapshot brings its own registers, through the image its memory carries.
TEST_F(Attack, RestoringAnotherSandboxsSnapshotBringsThatSnapshotsRegisters) {
    auto a = make();
    a.call<void>("SetFpuState", std::int64_t{77});
    auto of_a = a.snapshot();
    auto b = make();
    b.call<void>("SetFpuState", secret);
    b.restore(of_a);
    EXPECT_EQ(b.call<std::int64_t>("ReadXmm15"), 77);
    EXPECT_EQ(b.call<std::int64_t>("ReadMxcsr"), a.call<std::int64_t>("ReadMxcsr"));
    b.call<void>("SetFpuState", secret);
    b.restore(of_a);
    auto of_b = b.snapshot();  // right after the restore
    b.call<void>("SetFpuState", secret);
    b.restore(of_b);
    EXPECT_EQ(b.call<std::int64_t>("ReadXmm15"), 77);
    EXPECT_EQ(hl::multi_use_sandbox::from_snapshot(of_b).call<std::int64_t>("ReadXmm15"), 77);
}

// The entry stub (the code a call enters through after a restore) and the register image it loads
// are the host's: 0x4000 and 0x5000, fixed by mem::layout. The guest may read them, never write them.
TEST_F(Attack, TheEntryStubAndItsRegisterImageAreReadOnlyToTheGuest) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto xmm15 = sb.call<std::int64_t>("ReadXmm15");
    sb.restore(snap);
    for (const std::int64_t page : {0x4000, 0x5000}) {
        std::error_code ec;
        sb.call<void>(ec, "WriteAt", page + 0x20, secret);
        EXPECT_EQ(ec, errc::guest_fault) << std::hex << page;
        EXPECT_NE(sb.last_error().find(page == 0x4000 ? "entry stub" : "register image"), std::string::npos)
            << sb.last_error();
        sb.restore(snap);
        sb.call<void>("SetFpuState", secret);
        sb.restore(snap);
        EXPECT_EQ(sb.call<std::int64_t>("ReadXmm15"), xmm15) << std::hex << page;  // the stub still does its work
        sb.restore(snap);
    }
}

TEST_F(Attack, FsAndGsBasesDoNotReachTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    const auto fs = sb.call<std::int64_t>("ReadFsBase");
    const auto gs = sb.call<std::int64_t>("ReadGsBase");
    sb.restore(snap);
    const std::int64_t planted = 0x7f00'0000'1000;
    sb.call<void>("SetSegmentBases", planted);
    EXPECT_EQ(sb.call<std::int64_t>("ReadFsBase"), planted);  // the same task sees it
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int64_t>("ReadFsBase"), fs);
    EXPECT_EQ(sb.call<std::int64_t>("ReadGsBase"), gs);
    sb.restore(snap);

    // After a fault too, and in a sandbox made from a snapshot taken after restore.
    sb.call<void>("SetSegmentBases", planted);
    std::error_code ec;
    sb.call<std::int64_t>(ec, "InThenForge");
    EXPECT_TRUE(sb.poisoned()) << ec.message();
    sb.restore(snap);
    EXPECT_EQ(sb.call<std::int64_t>("ReadFsBase"), fs);
    sb.restore(snap);
    auto twin = hl::multi_use_sandbox::from_snapshot(sb.snapshot());
    EXPECT_EQ(twin.call<std::int64_t>("ReadGsBase"), gs);
}

// ---- Trap and interrupt-shadow state at the end of a call ----

class EndOfCall : public Attack, public ::testing::WithParamInterface<const char*> {};

TEST_P(EndOfCall, LeavesNothingForTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 3; ++round) {
        std::error_code ec;
        sb.call<void>(ec, GetParam());  // whatever the host makes of the stale result, the next task is its own
        sb.restore(snap);
        expect_clean(sb, 100 + round);
        sb.restore(snap);
    }
    auto twin = hl::multi_use_sandbox::from_snapshot(snap);
    std::error_code ec;
    twin.call<void>(ec, GetParam());
    twin.restore(snap);
    expect_clean(twin, 7);
}

INSTANTIATE_TEST_SUITE_P(Hostile, EndOfCall,
                         ::testing::Values("StepOverDone", "DoneInMovSsShadow", "StepOverDoneInMovSsShadow",
                                           "StepOverInInMovSsShadow"));

// The same endings on the path that poisons nothing: the guest ends the call with RFLAGS.TF set, in a
// MOV SS shadow, or both (popfq then mov ss, so the shadow holds the trap back past the `out`), after
// a call that left a valid int64 result behind. The host accepts the stale result; whatever KVM keeps
// of the trap or the shadow must not reach the next call, with or without a restore.
class CleanEndOfCall : public Attack, public ::testing::WithParamInterface<const char*> {};

TEST_P(CleanEndOfCall, LeavesNothingForTheNextCallOrTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 4; ++round) {
        EXPECT_EQ(sb.call<std::int64_t>("Identity", std::int64_t{0x1234}), 0x1234);
        std::error_code ec;
        sb.call<std::int64_t>(ec, GetParam());
        EXPECT_FALSE(sb.poisoned()) << sb.last_error();
        if (round % 2) sb.restore(snap);
        expect_clean(sb, 20 + round);
        sb.restore(snap);
    }
}

INSTANTIATE_TEST_SUITE_P(Hostile, CleanEndOfCall,
                         ::testing::Values("StepOverDoneReturning", "DoneInMovSsShadowReturning",
                                           "MovSsStepOverDoneReturning"));

TEST_F(Attack, MovSsShadowedStepOverInIsFinishedBeforeTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 3; ++round) {
        std::error_code ec;
        const auto forged = sb.call<std::int64_t>(ec, "MovSsStepOverIn");
        EXPECT_TRUE(ec) << forged;
        sb.restore(snap);
        expect_clean(sb, round);
        sb.restore(snap);
    }
}

// A 16- or 32-bit `in` at port 0x10f also reads port 0x110 and up, which the TSS bitmap refuses: the
// fault names that port rather than "the cause could not be determined".
TEST_F(Attack, FaultMessageNamesTheRefusedPortOfAWideInThatRunsPastTheLibrarysPorts) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (const std::int64_t width : {2, 4}) {
        std::error_code ec;
        sb.call<std::int64_t>(ec, "InPort", std::int64_t{0x10f}, width);
        EXPECT_EQ(ec, hl::make_error_code(errc::guest_fault)) << ec.message();
        EXPECT_NE(sb.last_error().find("not permitted"), std::string::npos) << sb.last_error();
        sb.restore(snap);
    }
}

// ---- Kills and deadlines around the half-done instruction ----

TEST_F(Attack, DeadlinesDuringAHalfDoneInstructionLeaveNothingForTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (int round = 0; round < 20; ++round) {
        const auto timeout = std::chrono::nanoseconds(1 + round * 2000);
        const errc code = hl::test::error_of([&] { sb.call_for<void>(timeout, "RepIns", std::int64_t{1} << 30); });
        EXPECT_TRUE(code == errc::timed_out || code == errc::protocol_error) << static_cast<int>(code);
        sb.restore(snap);
        expect_clean(sb, round);
        sb.restore(snap);
    }
}

TEST_F(Attack, KillsFromAnotherThreadDuringHalfDoneInstructionsLeaveNothingForTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    auto handle = sb.interrupt_handle();
    std::atomic<bool> stop{false};
    std::thread killer([&] {
        for (int i = 0; i < 200000 && !stop.load(); ++i) handle.kill();
    });
    for (int round = 0; round < 50; ++round) {
        std::error_code ec;
        sb.call<void>(ec, round % 2 ? "RepInsBackwards" : "RepIns", std::int64_t{1} << 30);
        EXPECT_TRUE(ec);
        sb.restore(snap);
        std::error_code ec2;
        const auto echoed = sb.call<std::int64_t>(ec2, "Identity", std::int64_t{round});
        // A kill may land on this call too; it must then fail as cancelled, never return something else.
        if (ec2) {
            EXPECT_EQ(ec2, hl::make_error_code(errc::cancelled)) << ec2.message();
        } else {
            EXPECT_EQ(echoed, round);
        }
        sb.restore(snap);
    }
    stop = true;
    killer.join();
    expect_clean(sb, 1);
}

// ---- `in` inside a host call flow, and a nested sandbox that does `in` ----

TEST_F(Attack, InAfterAHostCallLeavesNothingForTheNextTask) {
    auto sb = make();
    sb.register_host_function("Nested", []() -> std::int64_t { return 0x100; });
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 3; ++round) {
        std::error_code ec;
        const auto forged = sb.call<std::int64_t>(ec, "HostCallThenIn");
        EXPECT_TRUE(ec) << forged;
        sb.restore(snap);
        EXPECT_EQ(sb.call<std::int64_t>("CallNested"), 0x100);
        expect_clean(sb, round);
        sb.restore(snap);
    }
}

TEST_F(Attack, ANestedSandboxThatDoesInDoesNotDisturbTheOuterCall) {
    auto inner = make();
    auto inner_snap = inner.snapshot();
    auto outer = make();
    outer.register_host_function("Nested", [&]() -> std::int64_t {
        std::error_code ec;
        inner.call<std::int64_t>(ec, "InThenForge");
        EXPECT_TRUE(ec);
        inner.restore(inner_snap);
        return inner.call<std::int64_t>("Identity", std::int64_t{77});
    });
    auto outer_snap = outer.snapshot();
    for (int round = 0; round < 3; ++round) {
        EXPECT_EQ(outer.call<std::int64_t>("CallNested"), 77);
        std::error_code ec;
        outer.call<std::int64_t>(ec, "HostCallThenIn");
        EXPECT_TRUE(ec);
        outer.restore(outer_snap);
        expect_clean(outer, round);
        expect_clean(inner, round);
        outer.restore(outer_snap);
        inner.restore(inner_snap);
    }
}

// ---- Restoring another sandbox's snapshot over a half-done instruction ----

TEST_F(Attack, RestoringAnotherSandboxesSnapshotOverAHalfDoneInstructionIsClean) {
    auto a = make();
    auto b = make();
    auto b_snap = b.snapshot();
    for (const char* f : {"InThenForge", "InsOverCanary", "InsIntoCode"}) {
        std::error_code ec;
        if (std::string(f) == "InThenForge") {
            a.call<std::int64_t>(ec, f);
        } else {
            a.call<void>(ec, f);
        }
        EXPECT_TRUE(a.poisoned()) << f << ": " << ec.message();
        a.restore(b_snap);
        expect_clean(a, 9);
    }
}

// ---- The dirty log: pages the guest keeps writing, across the hot-page cooldown ----

TEST_F(Attack, SecretsInPagesWrittenEveryTaskNeverSurviveRestore) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (std::int64_t round = 0; round < 150; ++round) {
        // Host writes and guest writes mixed: the input buffer carries the secret, the vault gets it.
        sb.call<void>("FillVault", secret + round, round);
        sb.restore(snap);
        const auto seen = sb.call<std::int64_t>("VaultSum");
        ASSERT_EQ(seen, 0) << "round " << round;
        if (round % 5 == 0) {
            sb.restore(snap);  // a restore with nothing dirty
        }
        sb.restore(snap);
    }
}

}  // namespace

TEST_F(Attack, Addr32RepInsLeavesNothingForTheNextTask) {
    auto sb = make();
    auto snap = sb.snapshot();
    for (const std::int64_t count : {std::int64_t{3}, std::int64_t{2048}, std::int64_t{1} << 30}) {
        std::error_code ec;
        sb.call<void>(ec, "Addr32RepIns", count);
        EXPECT_TRUE(ec);
        EXPECT_TRUE(sb.poisoned());
        sb.restore(snap);
        expect_clean(sb, count);
        sb.restore(snap);
    }
}

// What the host wrote into the input buffer for one task (a long argument) is gone for the next,
// through call_with_restore and after an `in` that poisoned the first task.
TEST_F(Attack, AnEarlierTasksArgumentIsGoneFromTheInputBuffer) {
    auto sb = make();
    auto snap = sb.snapshot();
    const std::string secret_argument(3000, 'Z');
    // Without a restore the bytes stay (one task): the probe sees them.
    EXPECT_EQ(sb.call<std::int64_t>("CountInInput", secret_argument), 0);
    EXPECT_GT(sb.call<std::int64_t>("CountInInput", std::string("Z")), 1000);
    sb.restore(snap);
    for (int round = 0; round < 3; ++round) {
        sb.call_with_restore<std::int64_t>(snap, "CountInInput", secret_argument);
        EXPECT_EQ(sb.call_with_restore<std::int64_t>(snap, "CountInInput", std::string("Z")), 0);
        std::error_code ec;
        sb.call<std::int64_t>(ec, "CountInInput", secret_argument);
        sb.call<void>(ec, "RepIns", std::int64_t{1} << 30);
        EXPECT_TRUE(sb.poisoned());
        sb.restore(snap);
        EXPECT_EQ(sb.call<std::int64_t>("CountInInput", std::string("Z")), 0);
        sb.restore(snap);
    }
}
