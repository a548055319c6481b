// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <utility>

#include "hl/call_limits.hpp"

namespace hl {

class metrics;
class trace_recorder;

/// A sandbox's configuration: the sizes of its memory regions, in bytes (each rounded up to whole 4 KiB
/// pages), its interrupt signal, the defaults of its calls' limits, what it records (metrics, traces)
/// and its crash dumps. It is validated when a sandbox is created (errc::invalid_config names the field).
/// Hyperlight's equivalent is `SandboxConfiguration`; the defaults match it.
struct sandbox_config {
    // A constructor of its own, so that `{}` is not aggregate initialisation: GCC 12 destroys an
    // aggregate temporary with non-trivial members (the path and the pointers below) twice when it
    // is an argument in a co_await expression, as in `co_await async_sandbox::async_create(ex,
    // guest, {}, {})`.
    sandbox_config() noexcept {}

    /// Guest heap (malloc, operator new, FlatBuffers builders). 4 KiB .. 16 GiB.
    std::uint64_t heap_size = 128 * 1024;
    /// Guest stack, with an unmapped guard page below it. 8 KiB .. 1 GiB.
    std::uint64_t stack_size = 64 * 1024;
    /// Host-to-guest messages: a serialized call must fit, with 8 bytes of header. 4 KiB .. 1 GiB.
    std::uint64_t input_buffer_size = 16 * 1024;
    /// Guest-to-host messages: a serialized result must fit, with 8 bytes of header. 4 KiB .. 1 GiB.
    std::uint64_t output_buffer_size = 16 * 1024;

    /// The real-time signal, SIGRTMIN + this offset, that kicks a vCPU thread out of the guest for
    /// interrupt_handle::kill() and call deadlines. The library installs a no-op handler for it once
    /// per process (without SA_RESTART) and fails with errc::invalid_config if the application
    /// already handles that signal. Other signals are left alone.
    int interrupt_signal_offset = 0;

    /// The limits of every call that does not set its own (see hl::call_limits, which says how a pool's
    /// or runtime's defaults come first). None by default. They travel with the sandbox's snapshots.
    hl::call_limits call_limits{};
    /// Measure the CPU time of every call for multi_use_sandbox::usage(), not only of calls with a CPU
    /// budget: two reads of the thread's CPU clock per run of a call, about 1 us here.
    bool measure_cpu_time = false;
    /// Where the sandbox records its calls and restores (hl::metrics), shared with the sandboxes
    /// made from its snapshots; null (the default) records nothing. One metrics object may serve
    /// any number of sandboxes.
    std::shared_ptr<hl::metrics> metrics;
    /// Where the sandbox records trace events while the recorder records (hl::trace_recorder),
    /// shared with the sandboxes made from its snapshots; null (the default): none.
    std::shared_ptr<hl::trace_recorder> trace;
    /// Crash dumps: where a sandbox writes an ELF core file of the guest (its registers and memory at
    /// guest virtual addresses, readable by `gdb <guest binary> <core>`) when a call fails by the
    /// guest's own doing: errc::guest_fault, errc::stack_overflow or errc::guest_aborted (not a kill,
    /// a deadline or a protocol error). Empty (the default): no dumps. A relative path is taken from
    /// the working directory when the sandbox is created. The directory is not created; sandboxes
    /// created from a snapshot dump as the sandbox the snapshot was taken from was configured.
    /// The failure's code never changes: its message ends with where the core was written, or why
    /// none was (the limit was reached, the directory is missing or not writable, the disk is full).
    /// Files are named hl-core-<pid>-<n>.core and appear whole (written under a temporary name, then
    /// renamed); the library never deletes one.
    std::filesystem::path core_dump_directory;
    /// The most core files (hl-core-*.core, from any process) the directory may hold: none is written
    /// once it holds this many, so a guest that faults again and again cannot fill the disk; delete
    /// them to get new ones. 1 .. 65536.
    std::uint32_t core_dump_max_files = 16;
    /// The largest core file, in bytes. Registers and notes come first, then memory in this order
    /// until the next page would not fit: the stack from RSP up, the pages at RIP and at the faulting
    /// address, the guest image, the rest of the stack, then every other region the guest can read
    /// (PEB, entry stub, register image, input and output buffers, heap). Supervisor-only memory (GDT,
    /// TSS, page tables, kernel state) is never dumped. 64 KiB .. 64 GiB.
    std::uint64_t core_dump_max_bytes = 64 * 1024 * 1024;

    sandbox_config& set_heap_size(std::uint64_t bytes) { heap_size = bytes; return *this; }
    sandbox_config& set_stack_size(std::uint64_t bytes) { stack_size = bytes; return *this; }
    sandbox_config& set_input_buffer_size(std::uint64_t bytes) { input_buffer_size = bytes; return *this; }
    sandbox_config& set_output_buffer_size(std::uint64_t bytes) { output_buffer_size = bytes; return *this; }
    sandbox_config& set_interrupt_signal_offset(int offset) { interrupt_signal_offset = offset; return *this; }
    sandbox_config& set_call_limits(hl::call_limits limits) { call_limits = limits; return *this; }
    sandbox_config& set_measure_cpu_time(bool on) { measure_cpu_time = on; return *this; }
    sandbox_config& set_metrics(std::shared_ptr<hl::metrics> m) { metrics = std::move(m); return *this; }
    sandbox_config& set_trace(std::shared_ptr<hl::trace_recorder> t) { trace = std::move(t); return *this; }
    sandbox_config& set_core_dump_directory(std::filesystem::path dir) {
        core_dump_directory = std::move(dir);
        return *this;
    }
    sandbox_config& set_core_dump_max_files(std::uint32_t files) {
        core_dump_max_files = files;
        return *this;
    }
    sandbox_config& set_core_dump_max_bytes(std::uint64_t bytes) {
        core_dump_max_bytes = bytes;
        return *this;
    }
};

}  // namespace hl
