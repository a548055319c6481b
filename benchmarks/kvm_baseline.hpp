// SPDX-License-Identifier: Apache-2.0
// Raw KVM floors for the benchmarks, measured with the bare VM and plain ioctls and nothing of the
// sandbox on top: the numbers every sandbox figure is reported against. Benchmark code only, not
// part of the library.
#pragma once

#include <memory>

namespace hl::bench::baseline {

/// A minimal VM whose CPL3 guest loops on `out`: each roundtrip() is one KVM_RUN that exits on the
/// port write and comes back. The same CPU setup as a sandbox (long mode, CPL3, TSS I/O bitmap).
class exit_loop {
public:
    static std::unique_ptr<exit_loop> create();
    virtual ~exit_loop() = default;
    virtual void roundtrip() = 0;
};

/// KVM_CREATE_VM + one memory slot + KVM_CREATE_VCPU + mmap of kvm_run, then teardown.
void create_and_destroy_vm_vcpu();

/// A minimal VM whose CPL3 guest spins forever, for the raw kick latency: run() enters it and
/// returns when KVM_RUN returns EINTR; kick() (from another thread) sets immediate_exit and sends
/// the thread running run() a real-time signal with a no-op handler, as interrupt_handle::kill does.
class spin_loop {
public:
    static std::unique_ptr<spin_loop> create();
    virtual ~spin_loop() = default;
    virtual void run() = 0;
    virtual void kick(unsigned long thread) = 0;
};

}  // namespace hl::bench::baseline
