// SPDX-License-Identifier: Apache-2.0
#include "hl/error.hpp"

namespace hl {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "hyperlight"; }

    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::guest_error: return "the guest function returned an error";
        case errc::guest_aborted: return "the guest aborted; restore the sandbox before calling again";
        case errc::guest_fault: return "the guest raised a CPU exception; restore the sandbox before calling again";
        case errc::stack_overflow:
            return "the guest overflowed its stack; raise sandbox_config::stack_size or restore the sandbox";
        case errc::cancelled: return "the guest call was cancelled by the host";
        case errc::timed_out: return "the guest call exceeded its deadline";
        case errc::cpu_budget_exceeded: return "the guest call used up its CPU-time budget";
        case errc::poisoned: return "the sandbox is poisoned by an earlier failure; restore it before calling again";
        case errc::unknown_function: return "no function of that name is registered";
        case errc::parameter_mismatch: return "the arguments do not match the guest function's parameters";
        case errc::return_type_mismatch: return "the guest function returns a different type than requested";
        case errc::argument_too_large:
            return "the call does not fit the input buffer; raise sandbox_config::input_buffer_size";
        case errc::result_too_large:
            return "the guest's result does not fit the output buffer; raise sandbox_config::output_buffer_size";
        case errc::protocol_error: return "the guest broke the host/guest protocol";
        case errc::out_of_memory: return "the guest ran out of heap; raise sandbox_config::heap_size";
        case errc::kvm_unavailable: return "KVM is not available";
        case errc::invalid_config: return "the sandbox configuration is invalid";
        case errc::invalid_guest: return "the guest binary cannot be loaded";
        case errc::host_function_error: return "a host function failed";
        case errc::handler_error:
            return "a print or log handler failed while the guest was stopped; restore the sandbox before calling again";
        case errc::usage_error: return "the library was used in a way its contract does not allow";
        case errc::vm_error: return "KVM reported an unrecoverable error";
        case errc::pool_busy: return "the sandbox pool's wait queue is full; retry later or raise pool_options::max_waiters";
        case errc::pool_closed: return "the sandbox pool is closed";
        case errc::snapshot_mismatch:
            return "the snapshot belongs to a different guest or memory layout; restore one taken from this kind of sandbox";
        }
        return "unknown hyperlight error";
    }
};

}  // namespace

bool is_poisoning(std::error_code code) noexcept {
    if (code.category() != error_category()) return false;
    switch (static_cast<errc>(code.value())) {
    case errc::guest_aborted:
    case errc::guest_fault:
    case errc::stack_overflow:
    case errc::cancelled:
    case errc::timed_out:
    case errc::cpu_budget_exceeded:
    case errc::protocol_error:
    case errc::handler_error:
    case errc::vm_error:
    case errc::poisoned: return true;
    default: return false;
    }
}

const std::error_category& error_category() noexcept {
    static const category instance;
    return instance;
}

}  // namespace hl
