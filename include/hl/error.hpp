// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <system_error>

namespace hl {

/// Every error the library reports, in one `std::error_category` ("hyperlight"). OS failures keep the
/// system category; these codes say what went wrong at the level of a sandbox.
///
/// Exactly these codes leave the sandbox poisoned (every later call fails with `poisoned` until a
/// restore): guest_aborted, guest_fault, stack_overflow, cancelled, timed_out, cpu_budget_exceeded,
/// protocol_error, handler_error, vm_error, and poisoned itself (the sandbox stays so).
/// is_poisoning() answers it.
enum class errc {
    guest_error = 1,       ///< a guest function returned an error; the sandbox stays usable
    guest_aborted,         ///< the guest aborted (abort, assertion, runtime failure); poisons
    guest_fault,           ///< the guest raised a CPU exception (page fault, #UD, #DE, #GP); poisons
    stack_overflow,        ///< the guest ran into its stack guard page; poisons
    cancelled,             ///< the call was interrupted by the host; poisons
    timed_out,             ///< the call exceeded its deadline; poisons
    poisoned,              ///< the sandbox refuses calls until it is restored
    unknown_function,      ///< no such function: the guest has none of that name, or (passed on by the
                           ///< guest) the host has no host function of the name the guest called
    parameter_mismatch,    ///< wrong number or types of arguments for that function
    return_type_mismatch,  ///< the function returns another type than the one asked for
    argument_too_large,    ///< the serialized call does not fit the input buffer
    result_too_large,      ///< the guest's result does not fit the output buffer
    protocol_error,        ///< the guest broke the wire protocol (bad buffer, bad FlatBuffer); poisons
    out_of_memory,         ///< the guest ran out of heap
    kvm_unavailable,       ///< /dev/kvm is missing, not permitted, or lacks a needed capability
    invalid_config,        ///< the sandbox configuration cannot be laid out
    invalid_guest,         ///< the guest binary is not a loadable hyperlight guest
    host_function_error,   ///< a host function threw and the guest passed the error on
    handler_error,         ///< a print or log handler threw while the guest was stopped mid-call; poisons
    vm_error,              ///< KVM reported a failure the library cannot recover from; poisons
    snapshot_mismatch,     ///< the snapshot belongs to another guest or memory layout
    pool_busy,             ///< the sandbox pool's wait queue is full
    pool_closed,           ///< the sandbox pool is closed
    usage_error,           ///< the host used the API wrongly (a moved-from sandbox, a call from inside its
                           ///< own host function, concurrent use from two threads, a null argument)
    cpu_budget_exceeded,   ///< the call used up its CPU-time budget (call_limits::cpu_time); poisons
};

/// True when a failure with `code` leaves the sandbox poisoned (see errc). False for codes of other
/// categories.
bool is_poisoning(std::error_code code) noexcept;

const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// The exception thrown by the synchronous API: an `errc` plus a message with the details (which
/// function, which address, what to do).
class error : public std::system_error {
public:
    error(errc code, const std::string& what) : std::system_error(make_error_code(code), what) {}
    error(std::error_code code, const std::string& what) : std::system_error(code, what) {}
};

}  // namespace hl

template <>
struct std::is_error_code_enum<hl::errc> : std::true_type {};
