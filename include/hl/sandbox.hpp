// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "hl/call_limits.hpp"
#include "hl/config.hpp"
#include "hl/error.hpp"
#include "hl/guest_call.hpp"
#include "hl/host_function.hpp"
#include "hl/interrupt.hpp"
#include "hl/log.hpp"
#include "hl/snapshot.hpp"
#include "hl/value.hpp"

namespace hl {

namespace detail {
class sandbox_core;
}

class multi_use_sandbox;

/// A guest loaded into fresh sandbox memory but not yet run (Hyperlight's `UninitializedSandbox`).
/// Creating one validates the guest and the configuration; evolve() runs the guest's initialisation.
///
/// Thread-safety: a sandbox may be moved between threads but used by one thread at a time. Every
/// member fails with errc::usage_error on a sandbox that was moved from or evolved.
class uninitialized_sandbox {
public:
    /// Loads the guest ELF at `path`. Throws hl::error: invalid_guest (unreadable or malformed binary),
    /// invalid_config, or a system error.
    static uninitialized_sandbox from_file(const std::filesystem::path& path, const sandbox_config& config = {});

    /// Loads a guest ELF from memory (the bytes are copied). Throws as from_file().
    static uninitialized_sandbox from_bytes(std::span<const std::byte> elf, const sandbox_config& config = {});

    uninitialized_sandbox(uninitialized_sandbox&&) noexcept;
    uninitialized_sandbox& operator=(uninitialized_sandbox&&) noexcept;
    ~uninitialized_sandbox();

    /// Makes `fn` callable from the guest as `name`. `fn` is any callable with a deducible signature
    /// (function, lambda, std::function) over the guest-call types; std::string_view and
    /// std::span<const uint8_t> parameters view guest memory and are valid during the call only.
    /// The sandbox checks the name, parameter count and types before calling. An exception thrown by
    /// `fn` becomes an error the guest receives (and may pass on: the caller then sees
    /// errc::host_function_error with the exception's message). Host functions run on the thread
    /// that drives the sandbox and must not call into the same sandbox (that fails with
    /// errc::usage_error). Registering a name again replaces the function. A null function pointer
    /// or empty std::function fails with errc::usage_error.
    template <class F>
    uninitialized_sandbox& register_host_function(std::string name, F&& fn) {
        register_host_function(std::move(name), detail::make_host_function(std::forward<F>(fn)));
        return *this;
    }
    uninitialized_sandbox& register_host_function(std::string name, host_function fn);

    /// Where guest printf/puts output goes (default: stdout).
    uninitialized_sandbox& set_print_handler(print_handler handler);
    /// Where guest log records go (default: stderr).
    uninitialized_sandbox& set_log_handler(log_handler handler);
    /// The least severe guest log level delivered (default: info). Less severe log calls are
    /// filtered inside the guest and cost no VM exit.
    uninitialized_sandbox& set_log_level(log_level level);

    /// Creates the VM and runs the guest's initialisation (constructors and hl_guest_init()).
    /// Consumes the sandbox. Throws hl::error: kvm_unavailable with what to do when /dev/kvm cannot be
    /// used, or the guest's failure (guest_fault, guest_aborted, ...) when initialisation fails.
    multi_use_sandbox evolve() &&;

private:
    explicit uninitialized_sandbox(std::unique_ptr<detail::sandbox_core> core) noexcept;
    std::unique_ptr<detail::sandbox_core> core_;
};

/// An initialised sandbox whose guest functions can be called any number of times
/// (Hyperlight's `MultiUseSandbox`). Guest state persists from one call to the next.
///
/// Thread-safety: one thread at a time; calls do not nest. A call, snapshot, restore or
/// registration while another thread runs one fails with errc::usage_error (and changes nothing);
/// interrupt_handle() and its kill() may be used from any thread. On a moved-from sandbox every
/// member fails with errc::usage_error, except poisoned() (true) and last_error().
class multi_use_sandbox {
public:
    /// A ready sandbox whose memory maps `snap` copy-on-write: the guest's initialisation does not run
    /// again, and any number of sandboxes share the snapshot's pages until they write to them. Host
    /// functions, handlers and the log level are not part of a snapshot: register them on the new
    /// sandbox before calling. Throws errc::usage_error for a null `snap`.
    static multi_use_sandbox from_snapshot(std::shared_ptr<const hl::snapshot> snap);

    /// Moving or assigning must not happen while a call runs on the source.
    multi_use_sandbox(multi_use_sandbox&&) noexcept;
    multi_use_sandbox& operator=(multi_use_sandbox&&) noexcept;
    /// If another thread is running a call, snapshot or restore on this sandbox, the destructor kills
    /// the guest call and waits for that thread to leave before freeing anything (a host function it
    /// is in runs to its end first). Inside one of the sandbox's own host functions or handlers
    /// (destroyed, or assigned over), the sandbox lives on until its call has unwound: that call ends
    /// with errc::usage_error as soon as the callback returns, and touches the destroyed object no more.
    /// While a guest_call of this sandbox exists, memory and VM live on until it is destroyed (see
    /// hl::guest_call); an unfinished one is killed and ends with errc::usage_error.
    ~multi_use_sandbox();

    /// Calls the guest function `name` with `args` and returns its result as R. R and the argument
    /// types are int32_t, uint32_t, int64_t, uint64_t, float, double, bool, std::string (arguments: any
    /// string type), std::vector<uint8_t> (arguments: also std::span<const uint8_t>), or void for R.
    ///
    /// Throws hl::error. Poisons the sandbox (every later call fails with errc::poisoned until a
    /// restore) exactly for the codes that is_poisoning() names: guest_aborted, guest_fault,
    /// stack_overflow, cancelled, timed_out, protocol_error, handler_error, vm_error, and poisoned
    /// itself. Leaves it usable: guest_error, unknown_function, parameter_mismatch,
    /// return_type_mismatch, argument_too_large, result_too_large, out_of_memory,
    /// host_function_error, and usage_error (a call from inside the sandbox's own host function or
    /// handler, or while another thread uses it).
    template <class R = void, class... Args>
        requires(detail::return_type<R> && sizeof...(Args) <= max_parameters)
    R call(std::string_view name, const Args&... args) {
        const argument arguments[sizeof...(Args) + 1] = {detail::to_argument(args)..., argument{}};
        return detail::from_return_value<R>(
            call_dynamic(name, detail::value_traits<R>::type, std::span(arguments, sizeof...(Args))));
    }

    /// As call(), reporting failure through `ec` (and last_error()) instead of throwing; returns a
    /// default-constructed R on failure. A kill takes no exception on its way here, internally
    /// either: this overload reports it sooner than call(). (A throw right after a guest has run
    /// a while costs 5-33 us on the PVM machine measured, against 1-3 us otherwise: the guest
    /// leaves the host's caches and TLB cold for the unwinder, benchmarks/README.md.) A usage_error
    /// because another thread uses the sandbox leaves last_error() alone (it belongs to that thread).
    template <class R = void, class... Args>
        requires(detail::return_type<R> && sizeof...(Args) <= max_parameters)
    R call(std::error_code& ec, std::string_view name, const Args&... args) {
        if ((detail::is_null_string(args) || ...)) {
            null_argument(ec);
            return R();  // also for void, where R{} is not portable (clang 14 rejects void{})
        }
        const argument arguments[sizeof...(Args) + 1] = {detail::to_argument(args)..., argument{}};
        return_value r = call_dynamic(ec, name, detail::value_traits<R>::type, std::span(arguments, sizeof...(Args)));
        if constexpr (!std::is_void_v<R>) {
            if (ec) return R{};
        }
        return detail::from_return_value<R>(std::move(r));
    }

    /// As call(), with a deadline: past `timeout` the guest is interrupted and the call fails with
    /// errc::timed_out (the sandbox is then poisoned until restored). Uses the calling thread's one
    /// POSIX timer (shared by all sandboxes the thread drives); no thread is created per call.
    template <class R = void, class Rep, class Period, class... Args>
        requires(detail::return_type<R> && sizeof...(Args) <= max_parameters)
    R call_for(std::chrono::duration<Rep, Period> timeout, std::string_view name, const Args&... args) {
        return call_for<R>(hl::call_limits{std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), {}}, name,
                           args...);
    }

    /// As call(), within `limits` (see hl::call_limits): a deadline (errc::timed_out) and a CPU-time
    /// budget (errc::cpu_budget_exceeded); either poisons the sandbox until restored. A field left
    /// zero takes the sandbox's default (default_call_limits()). Negative durations fail with
    /// errc::usage_error.
    template <class R = void, class... Args>
        requires(detail::return_type<R> && sizeof...(Args) <= max_parameters)
    R call_for(const hl::call_limits& limits, std::string_view name, const Args&... args) {
        const argument arguments[sizeof...(Args) + 1] = {detail::to_argument(args)..., argument{}};
        return detail::from_return_value<R>(
            call_dynamic(name, detail::value_traits<R>::type, std::span(arguments, sizeof...(Args)), limits));
    }

    /// The untyped form of call(): the result holds `return_type`'s alternative, within `limits`
    /// (merged with the defaults). A positive `timeout` is the call's deadline.
    return_value call_dynamic(std::string_view name, value_type return_type, std::span<const argument> args,
                              const hl::call_limits& limits = {});
    /// (A template, so that `{}` as the last argument still means "no limits".)
    template <class Rep, class Period>
    return_value call_dynamic(std::string_view name, value_type return_type, std::span<const argument> args,
                              std::chrono::duration<Rep, Period> timeout) {
        return call_dynamic(name, return_type, args,
                            hl::call_limits{std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), {}});
    }
    return_value call_dynamic(std::error_code& ec, std::string_view name, value_type return_type,
                              std::span<const argument> args) noexcept;

    /// Starts a call that the caller runs in slices (see hl::guest_call; the async runtime's way in).
    /// Nothing runs until its first run(), but the call counts as running from now on
    /// (interrupt_handle::running(), kill()). Until it has finished, every other member that drives
    /// the sandbox (call, snapshot, restore, registration, handlers, start_call) fails with
    /// errc::usage_error. Throws as call() does for what is known before the guest runs:
    /// errc::poisoned, argument_too_large, usage_error (another thread or an unfinished call uses
    /// the sandbox, or from inside its own host function). `limits`, merged with the defaults, bound
    /// the call from now on: its deadline counts from now, its CPU time only while a run() runs it.
    guest_call start_call(std::string_view name, value_type return_type, std::span<const argument> args,
                          const hl::call_limits& limits = {});
    template <class Rep, class Period>
    guest_call start_call(std::string_view name, value_type return_type, std::span<const argument> args,
                          std::chrono::duration<Rep, Period> timeout) {
        return start_call(name, return_type, args,
                          hl::call_limits{std::chrono::duration_cast<std::chrono::nanoseconds>(timeout), {}});
    }

    /// The limits of calls that set none of their own: sandbox_config::call_limits until replaced.
    /// Between calls (errc::usage_error while another thread uses the sandbox; the getter also from
    /// inside its own host functions); a replacement stays with the sandbox, not its snapshots.
    hl::call_limits default_call_limits() const;
    void set_default_call_limits(const hl::call_limits& limits);

    /// What the sandbox's calls have cost since it was created (see hl::call_usage), initialisation
    /// included; restores do not reset it. Between calls, or from inside one of its own host
    /// functions (the running call's share so far not yet included in cpu_time).
    call_usage usage() const;

    /// Captures guest memory and vCPU state. Between calls only; throws errc::poisoned on a poisoned
    /// sandbox. Afterwards, restoring this snapshot costs in proportion to the pages written since.
    std::shared_ptr<const hl::snapshot> snapshot();

    /// Puts guest memory and vCPU state back to `snap` and clears poison. Copies only the pages
    /// written since the sandbox last matched `snap` (its last snapshot or restore), or every page
    /// either may hold for another snapshot. Throws errc::snapshot_mismatch, changing nothing, when
    /// `snap` comes from another guest or configuration; errc::usage_error for a null `snap`.
    void restore(const std::shared_ptr<const hl::snapshot>& snap);

    /// Calls, then restores `snap` whether the call succeeded or not (Hyperlight's call-with-restore
    /// pattern): the next caller finds the sandbox exactly as `snap`. Rethrows the call's error.
    template <class R = void, class... Args>
        requires(detail::return_type<R> && sizeof...(Args) <= max_parameters)
    R call_with_restore(const std::shared_ptr<const hl::snapshot>& snap, std::string_view name, const Args&... args) {
        const argument arguments[sizeof...(Args) + 1] = {detail::to_argument(args)..., argument{}};
        return detail::from_return_value<R>(call_dynamic_with_restore(snap, name, detail::value_traits<R>::type,
                                                                      std::span(arguments, sizeof...(Args))));
    }
    return_value call_dynamic_with_restore(const std::shared_ptr<const hl::snapshot>& snap, std::string_view name,
                                           value_type return_type, std::span<const argument> args);

    /// A handle that stops this sandbox's running call from any thread (see interrupt_handle).
    hl::interrupt_handle interrupt_handle() const;

    /// The message of the last call that failed through an error_code overload (the exception of a
    /// throwing call carries its own message); restore() clears it.
    const std::string& last_error() const noexcept;

    /// True after a failure that left the guest in an unknown state (see is_poisoning()), until a
    /// restore. True on a moved-from sandbox, which cannot run calls either.
    bool poisoned() const noexcept;

    /// As on uninitialized_sandbox; takes effect from the next call.
    template <class F>
    multi_use_sandbox& register_host_function(std::string name, F&& fn) {
        register_host_function(std::move(name), detail::make_host_function(std::forward<F>(fn)));
        return *this;
    }
    multi_use_sandbox& register_host_function(std::string name, host_function fn);
    multi_use_sandbox& set_print_handler(print_handler handler);
    multi_use_sandbox& set_log_handler(log_handler handler);
    multi_use_sandbox& set_log_level(log_level level);

private:
    friend class uninitialized_sandbox;
    explicit multi_use_sandbox(std::unique_ptr<detail::sandbox_core> core) noexcept;
    /// Reports a null character pointer argument (errc::usage_error) through `ec` and last_error().
    void null_argument(std::error_code& ec) noexcept;
    std::unique_ptr<detail::sandbox_core> core_;
    std::string last_error_;
};

}  // namespace hl
