// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <unordered_map>

#include <flatbuffers/flatbuffers.h>

#include "hl/config.hpp"
#include "hl/error.hpp"
#include "hl/host_function.hpp"
#include "hl/log.hpp"
#include "hl/snapshot.hpp"
#include "hl/value.hpp"
#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "mem/page_bitmap.hpp"
#include "sandbox/driving_thread.hpp"
#include "sandbox/interrupt.hpp"
#include "sandbox/sandbox_image.hpp"
#include "vmm/vm.hpp"

namespace hl::detail {

/// Everything a sandbox is, behind the public typestate classes: guest memory laid out and loaded,
/// the VM (once initialised), and the call protocol. Driven by one thread at a time.
class sandbox_core {
public:
    /// Validates and loads the guest ELF into fresh memory; no VM yet.
    static std::unique_ptr<sandbox_core> create(std::vector<std::byte> elf, const sandbox_config& config);

    /// A ready sandbox whose memory maps `snap` copy-on-write; the guest's initialisation is not run.
    static std::unique_ptr<sandbox_core> create_from(std::shared_ptr<const snapshot> snap);

    /// Creates the VM and runs the guest's initialisation.
    void initialize();

    /// Snapshot and restore (snapshot.cpp).
    std::shared_ptr<const snapshot> take_snapshot();
    void restore(const std::shared_ptr<const snapshot>& snap);

    /// Waits for an operation that another thread runs on the sandbox to end (killing its guest
    /// call) before freeing anything.
    ~sandbox_core();

    /// Runs a guest function. A positive `timeout` is the call's deadline (errc::timed_out).
    return_value call(std::string_view name, value_type return_type, std::span<const argument> args,
                      std::chrono::nanoseconds timeout = {});

    const std::shared_ptr<interrupt_state>& interrupt() const noexcept { return interrupt_; }

    bool poisoned() const noexcept { return !poison_reason_.empty(); }

    /// Claimed by the public API around every call, snapshot, restore and registration.
    driving_thread& driver() noexcept { return driver_; }

    /// For a sandbox destroyed or assigned over inside one of its own host functions or handlers:
    /// the core keeps itself alive (freeing it would pull memory and VM from under the running call),
    /// the call ends with errc::usage_error once the callback returns, and whoever holds the claim
    /// frees it with take_abandoned() after the call has unwound.
    static void abandon(std::unique_ptr<sandbox_core> core) noexcept {
        sandbox_core* self = core.get();
        self->abandoned_ = std::move(core);
    }
    bool abandoned() const noexcept { return abandoned_ != nullptr; }
    std::unique_ptr<sandbox_core> take_abandoned() noexcept { return std::move(abandoned_); }

    void register_host_function(std::string name, host_function fn);
    void set_print_handler(print_handler handler);
    void set_log_handler(log_handler handler);
    void set_log_level(log_level level);

private:
    sandbox_core(std::shared_ptr<const sandbox_image> image, mem::guest_memory memory);

    /// Throws unless the sandbox may be driven now (not from inside one of its own callbacks).
    void check_not_in_callback(const char* what) const;
    /// Writes log_level_ into the PEB.
    void apply_log_level();

    /// Gathers the pages written since the last snapshot or restore (by the guest and by the host)
    /// into dirty_, and records them as populated.
    void collect_dirty_pages();

    /// Enters the guest for `op` and runs it until it reports done. Throws (and poisons) on any other
    /// way out: abort, fault, a protocol violation.
    void enter(std::uint64_t op, std::chrono::nanoseconds timeout = {});

    /// Finishes whatever instruction the last exit left half done in KVM (vm::complete_pending), so
    /// that nothing of this task runs after the next restore. Poisons with errc::vm_error, for
    /// good, when KVM does not settle.
    void settle_vcpu();

    /// Creates the VM and hooks it up to the interrupt state.
    void create_vm();

    return_value read_result(std::string_view name, value_type return_type);

    /// Serves the guest's host call in the output buffer and writes the reply there (host_calls.cpp).
    void serve_host_call();
    /// Delivers the guest's text or log record in the output buffer (host_calls.cpp).
    void deliver_output(std::uint32_t kind);
    /// The guest's message in the output buffer, bounds-checked. Poisons on a bad size.
    std::span<const std::byte> output_message(const char* what);
    void reply(std::span<const std::byte> message);

    [[noreturn]] void poison_and_throw(errc code, const std::string& message);
    [[noreturn]] void throw_fault();
    [[noreturn]] void throw_abort(std::uint32_t code);

    const mem::region* region_at(mem::gpa address) const noexcept;
    std::string describe(std::uint64_t address) const;

    std::shared_ptr<const sandbox_image> image_;
    const mem::layout& layout_;  // image_->layout
    mem::guest_memory memory_;
    std::optional<vmm::vm> vm_;
    std::shared_ptr<const snapshot> base_;  // memory equals it, except for the pages written since
    mem::page_bitmap populated_;           // pages that may hold non-zero data
    std::uint64_t populated_count_ = 0;
    // Filled by collect_dirty_pages(): the pages written since the last collection, and the indices
    // of its non-zero words (ascending). Everything after the fetch touches only those words.
    mem::page_bitmap dirty_;
    std::vector<std::uint32_t> dirty_words_;
    mem::page_bitmap previous_dirty_;  // the guest's dirty pages at the collection before
    std::vector<std::uint32_t> previous_words_;
    mem::page_bitmap rearm_;  // scratch, all zero between collections
    std::uint64_t collections_ = 0;
    flatbuffers::FlatBufferBuilder builder_{1024};
    std::string poison_reason_;
    // Held by shared_ptr so that a callback which replaces itself does not destroy itself mid-call.
    std::unordered_map<std::string, std::shared_ptr<const host_function>> host_functions_;
    std::shared_ptr<const print_handler> print_;
    std::shared_ptr<const log_handler> log_;
    log_level log_level_ = log_level::info;  // the host's; written into the PEB, re-applied after restore
    bool vcpu_unusable_ = false;  // KVM kept a half-done instruction: no restore may reuse this vCPU
    bool in_callback_ = false;  // a host function or handler runs: no calls, snapshots or restores
    std::shared_ptr<interrupt_state> interrupt_ = std::make_shared<interrupt_state>();
    driving_thread driver_;
    std::unique_ptr<sandbox_core> abandoned_;  // itself, see abandon()
    deadline_timer deadline_;
};

}  // namespace hl::detail
