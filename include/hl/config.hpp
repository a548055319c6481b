// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>

#include "hl/call_limits.hpp"

namespace hl {

class metrics;
class trace_recorder;

/// The sizes of a sandbox's memory regions, in bytes. Each is rounded up to whole 4 KiB pages; the
/// layout is computed and validated when a sandbox is created (errc::invalid_config names the field).
/// Hyperlight's equivalent is `SandboxConfiguration`; the defaults match it.
struct sandbox_config {
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

    sandbox_config& set_heap_size(std::uint64_t bytes) { heap_size = bytes; return *this; }
    sandbox_config& set_stack_size(std::uint64_t bytes) { stack_size = bytes; return *this; }
    sandbox_config& set_input_buffer_size(std::uint64_t bytes) { input_buffer_size = bytes; return *this; }
    sandbox_config& set_output_buffer_size(std::uint64_t bytes) { output_buffer_size = bytes; return *this; }
    sandbox_config& set_interrupt_signal_offset(int offset) { interrupt_signal_offset = offset; return *this; }
    sandbox_config& set_call_limits(hl::call_limits limits) { call_limits = limits; return *this; }
    sandbox_config& set_measure_cpu_time(bool on) { measure_cpu_time = on; return *this; }
    sandbox_config& set_metrics(std::shared_ptr<hl::metrics> m) { metrics = std::move(m); return *this; }
    sandbox_config& set_trace(std::shared_ptr<hl::trace_recorder> t) { trace = std::move(t); return *this; }
};

}  // namespace hl
