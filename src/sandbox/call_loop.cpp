// SPDX-License-Identifier: Apache-2.0
// The call protocol and the exit loop. A call is started once (input buffer, entry registers, the
// interrupt bracket) and run until it ends: in one go (call(), initialisation) or in slices (a
// guest_call), on the same loop. Between two run()s nothing of the call is on the thread: its state
// is the call_state and the stopped vCPU.
#include <algorithm>
#include <csignal>
#include <new>
#include <optional>
#include <thread>

#include "hl/abi/hl_abi.h"
#include "hl/metrics.hpp"
#include "protocol/codec.hpp"
#include "sandbox/sandbox_core.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

// A limit beyond 2^62 ns (146 years) is no limit in practice; bounded so, a deadline or a CPU
// clock value plus it cannot overflow.
call_limits clamped(call_limits limits) noexcept {
    constexpr std::chrono::nanoseconds most(std::int64_t{1} << 62);
    return {std::min(limits.timeout, most), std::min(limits.cpu_time, most)};
}

errc errc_for(protocol::guest_error_kind kind) {
    switch (kind) {
    case protocol::guest_error_kind::user: return errc::guest_error;
    case protocol::guest_error_kind::function_not_found: return errc::unknown_function;
    case protocol::guest_error_kind::parameter_mismatch: return errc::parameter_mismatch;
    case protocol::guest_error_kind::return_type_mismatch: return errc::return_type_mismatch;
    case protocol::guest_error_kind::malformed_call: return errc::protocol_error;  // poisons, see read_result
    case protocol::guest_error_kind::out_of_memory: return errc::out_of_memory;
    case protocol::guest_error_kind::result_too_large: return errc::result_too_large;
    case protocol::guest_error_kind::host_function_error: return errc::host_function_error;
    case protocol::guest_error_kind::argument_too_large: return errc::argument_too_large;
    }
    return errc::protocol_error;
}


}  // namespace

void sandbox_core::initialize() {
    create_vm();
    call_state c;
    begin(c, HL_OP_INIT, "initialisation", value_type::void_type, {}, call_state::mode::to_the_end);
    if (run(c, {}) == guest_call::status::failed) throw failure_of(c);
}

return_value sandbox_core::call(std::string_view name, value_type return_type, std::span<const argument> args,
                                const call_limits& limits) {
    std::error_code failure;
    std::string reason;
    return_value result = call(name, return_type, args, limits, failure, reason);
    if (failure) throw error(failure, reason);
    return result;
}

return_value sandbox_core::call(std::string_view name, value_type return_type, std::span<const argument> args,
                                const call_limits& limits, std::error_code& failure, std::string& reason) {
    call_state c;
    start(c, name, return_type, args, limits, call_state::mode::to_the_end);
    if (run(c, {}) == guest_call::status::failed) {
        failure = c.failure;
        reason = std::move(c.failure_reason);
        return {};
    }
    return std::move(*c.result);
}

void sandbox_core::start(call_state& c, std::string_view name, value_type return_type, std::span<const argument> args,
                         const call_limits& limits, call_state::mode how) {
    check_not_in_callback("call its guest");
    if (open_call_ != nullptr) {
        throw error(errc::usage_error,
                    util::strfmt("cannot call '%s': the call to '%s' started with start_call() has not finished; "
                                 "run it to its end or destroy its hl::guest_call first",
                                 util::name_for_message(name).c_str(), open_call_->name.c_str()));
    }
    if (poisoned()) {
        if (image_->metrics) image_->metrics->record_refused(make_error_code(errc::poisoned));
        throw error(errc::poisoned, util::strfmt("cannot call '%s': the sandbox is poisoned (%s); restore it first",
                                                 util::name_for_message(name).c_str(), poison_reason_.c_str()));
    }
    if (limits.timeout.count() < 0 || limits.cpu_time.count() < 0) {
        throw error(errc::usage_error, util::strfmt("cannot call '%s': its call_limits hold a negative duration (0 "
                                                    "means no limit)",
                                                    util::name_for_message(name).c_str()));
    }
    try {
        buffers_.write_call(name, return_type, args);
    } catch (const error& e) {  // argument_too_large: a call refused, counted as one
        if (image_->metrics) image_->metrics->record_refused(e.code());
        throw;
    }
    begin(c, HL_OP_DISPATCH, name, return_type, limits, how);
    c.used.calls = 1;
    ++usage_.calls;
}

void sandbox_core::begin(call_state& c, std::uint64_t op, std::string_view name, value_type return_type,
                         const call_limits& limits, call_state::mode how) {
    c.op = op;
    c.name = util::name_for_message(name);
    c.return_type = return_type;
    // The defaults are the calls'; initialisation has no limits but its own (none).
    c.limits = clamped(op == HL_OP_INIT ? limits : limits.or_else(default_limits_));
    c.deadline = c.limits.timeout.count() > 0 ? monotonic_ns() + c.limits.timeout.count() : 0;
    c.measure_cpu = image_->measure_cpu_time || c.limits.cpu_time.count() > 0;
    c.traced = op != HL_OP_INIT && tracing();
    c.started_at = (image_->metrics || c.traced) && op != HL_OP_INIT ? monotonic_ns() : 0;
    c.how = how;
    c.thread = std::this_thread::get_id();
    c.core = this;

    vmm::cpu_state r;  // every general register 0 but these: the entry stub leaves RAX and RDX 0 too
    r.rip = registers_pending_ ? layout_.entry_stub().value : image_->entry.value;
    // A Linux program starts at its initial stack (RSP at argc); every other entry is as if called
    // (the ABI wants rsp + 8 16-byte aligned), below that stack.
    const bool exec = image_->kind == loader::guest_kind::linux_program && op == HL_OP_INIT;
    r.rsp = exec ? image_->start_stack.value : image_->call_stack_top.value - 8;
    r.rdi = layout_.peb().value;
    r.rsi = op;
    r.rflags = vmm::rflags_reserved;
    vm_->set_registers(r);

    interrupt_->begin_call();
    if (how == call_state::mode::sliced) open_call_ = &c;
}

guest_call::status sandbox_core::run(call_state& c, std::chrono::nanoseconds slice) {
    if (c.started_at == 0) return run_unrecorded(c, slice);
    guest_call::status s;
    try {
        s = run_unrecorded(c, slice);
    } catch (const std::system_error& e) {  // hl::error too
        if (c.at.load() == call_state::phase::failed) record(c, e.code());
        throw;
    } catch (const std::bad_alloc&) {
        if (c.at.load() == call_state::phase::failed) record(c, std::make_error_code(std::errc::not_enough_memory));
        throw;
    } catch (...) {
        if (c.at.load() == call_state::phase::failed) record(c, make_error_code(errc::vm_error));
        throw;
    }
    if (s == guest_call::status::finished) record(c, {});
    if (s == guest_call::status::failed) record(c, c.failure);
    return s;
}

void sandbox_core::record(const call_state& c, std::error_code outcome) noexcept {
    if (image_->metrics) {
        image_->metrics->record_call(outcome, std::chrono::nanoseconds(monotonic_ns() - c.started_at), c.used);
    }
    if (c.traced) {
        const bool ours = outcome.category() == error_category() && outcome.value() > 0;
        const std::size_t index = !outcome ? 0
                                  : ours   ? static_cast<std::size_t>(outcome.value())
                                           : metrics::outcomes - 1;
        trace("call", c.name, metrics::outcome_name(index), c.started_at, true);
    }
}

guest_call::status sandbox_core::run_unrecorded(call_state& c, std::chrono::nanoseconds slice) {
    const std::int64_t run_start = c.traced ? monotonic_ns() : 0;
    // The wait for an asynchronous host function, between the run that stopped for it and this one
    // (so that the events on the sandbox's track nest).
    if (run_start != 0 && c.host_call_at != 0 && c.at.load() == call_state::phase::host_call) {
        trace("host_call", c.pending.name, "asynchronous", c.host_call_at, false, run_start);
    }
    std::optional<run_frame> frame;
    // At least 1: a call whose budget is gone ends at the first look (see drive()).
    const std::int64_t budget = c.limits.cpu_time.count();
    const std::int64_t cpu_left = budget > 0 ? std::max<std::int64_t>(budget - c.used.cpu_time.count(), 1) : 0;
    try {
        frame.emplace(*interrupt_, c.deadline, slice.count() > 0 ? slice.count() : 0, c.measure_cpu, cpu_left);
    } catch (...) {
        // A guest_call stays as it was, to be run again; a call run in one go is over.
        if (c.how == call_state::mode::to_the_end) end(c, call_state::phase::failed);
        throw;
    }
    // Any way out by an exception ends the call: a cleanup on the way, not a catch and a rethrow,
    // which would unwind a second time on the kill path.
    struct end_on_failure {
        sandbox_core& core;
        call_state& c;
        run_frame& frame;
        std::int64_t run_start;
        bool armed = true;
        ~end_on_failure() {
            core.account(c, frame);
            if (run_start != 0) {
                core.trace("run", {}, {}, run_start);
                c.host_call_at = c.at.load() == call_state::phase::host_call ? monotonic_ns() : 0;
            }
            if (armed) core.end(c, call_state::phase::failed);
        }
    } failure{*this, c, *frame, run_start};
    const guest_call::status s = drive(c, *frame);
    if (s == guest_call::status::finished) {
        if (c.op == HL_OP_DISPATCH) c.result = read_result(c.name, c.return_type);
        end(c, call_state::phase::finished);
    } else if (s == guest_call::status::failed) {
        end(c, call_state::phase::failed);
    }
    failure.armed = false;
    return s;
}

void sandbox_core::abandon(call_state& c) noexcept {
    try {
        poison_reason_ = util::strfmt("the call to '%s' was abandoned before it finished (its hl::guest_call was "
                                      "destroyed)",
                                      c.name.c_str());
    } catch (const std::bad_alloc&) {
        poison_reason_ = "abandoned";  // short enough not to allocate
    }
    end(c, call_state::phase::failed);
    if (c.started_at != 0) record(c, make_error_code(errc::cancelled));
}

void sandbox_core::end(call_state& c, call_state::phase how) noexcept {
    c.interrupted_at_end = interrupt_->cancel.load() || (c.deadline != 0 && monotonic_ns() >= c.deadline);
    c.pending = {};
    if (open_call_ == &c) open_call_ = nullptr;
    interrupt_->end_call();
    c.at.store(how);
}

void sandbox_core::account(call_state& c, const run_frame& frame) noexcept {
    const std::chrono::nanoseconds cpu(frame.cpu_used());
    c.used.cpu_time += cpu;
    usage_.cpu_time += cpu;
}

guest_call::status sandbox_core::interrupted(call_state& c, errc why) {
    c.failure = make_error_code(why);
    switch (why) {
    case errc::timed_out:
        c.failure_reason =
            util::strfmt("the guest call exceeded its deadline of %.3f ms", c.limits.timeout.count() / 1e6);
        break;
    case errc::cpu_budget_exceeded:
        c.failure_reason =
            util::strfmt("the guest call used up its CPU-time budget of %.3f ms", c.limits.cpu_time.count() / 1e6);
        break;
    default:
        c.failure_reason = "stopped by a kill (interrupt_handle::kill(), or a cancelled async operation)";
        break;
    }
    poison_reason_ = c.failure_reason;
    return guest_call::status::failed;
}

error sandbox_core::failure_of(const call_state& c) { return error(c.failure, c.failure_reason); }

guest_call::status sandbox_core::drive(call_state& c, run_frame& frame) {
    if (c.at.load() == call_state::phase::host_call) {
        answer_host_call(c);
    }
    // Between slices, or while a host call waited, the deadline may have passed.
    if (c.deadline != 0 && monotonic_ns() >= c.deadline) return interrupted(c, errc::timed_out);
    // A slice may end just past the budget, before its check came round.
    if (c.limits.cpu_time.count() > 0 && c.used.cpu_time >= c.limits.cpu_time && !interrupt_->cancel.load()) {
        return interrupted(c, errc::cpu_budget_exceeded);
    }
    for (;;) {
        if (abandoned()) {
            poison_and_throw(errc::usage_error, "the sandbox was destroyed during the call (inside one of its own host "
                                                "functions or handlers, or while its hl::guest_call was unfinished); "
                                                "its call ends here");
        }
        switch (frame.stop_reason()) {
        case run_frame::reason::none: break;
        case run_frame::reason::cancelled: return interrupted(c, errc::cancelled);
        case run_frame::reason::timed_out: return interrupted(c, errc::timed_out);
        case run_frame::reason::over_budget: return interrupted(c, errc::cpu_budget_exceeded);
        case run_frame::reason::slice_over: return guest_call::status::sliced;
        }
        frame.entering_guest();
        vmm::vm_exit exit;
        try {
            exit = vm_->run();
        } catch (const std::system_error& e) {
            frame.left_guest(false);
            poison_and_throw(errc::vm_error, std::string("KVM_RUN failed: ") + e.what());
        }
        frame.left_guest(exit.what == vmm::vm_exit::kind::interrupted);
        ++c.used.vm_exits;
        ++usage_.vm_exits;
        // Out of the stub, the guest has its snapshot's registers; a run that stopped inside it (a
        // kick, a fault) leaves the next call to enter it again.
        if (registers_pending_ && !in_entry_stub(vm_->regs().rip)) registers_pending_.reset();
        switch (exit.what) {
        case vmm::vm_exit::kind::io_out:
            if (exit.port == HL_PORT_DONE) {
                if (exit.value != HL_STATUS_OK) {
                    poison_and_throw(
                        errc::guest_aborted,
                        util::strfmt("the guest reported failure status %u", exit.value) + crash_dump(SIGABRT));
                }
                return guest_call::status::finished;
            }
            if (exit.port == HL_PORT_HOST_CALL) {
                ++c.used.host_calls;
                ++usage_.host_calls;
                const std::int64_t host_start = c.traced ? monotonic_ns() : 0;
                const std::string host_name = c.traced ? host_call_name() : std::string();
                if (!serve_host_call(c)) {
                    if (host_start != 0) trace("host_call", host_name, {}, host_start);
                    continue;
                }
                // A kill that came while the guest ran is honoured now; one that comes later calls
                // the listener, as the call is outside the guest.
                switch (frame.stop_reason()) {
                case run_frame::reason::cancelled: return interrupted(c, errc::cancelled);
                case run_frame::reason::timed_out: return interrupted(c, errc::timed_out);
                case run_frame::reason::over_budget: return interrupted(c, errc::cpu_budget_exceeded);
                case run_frame::reason::none:
                case run_frame::reason::slice_over: return guest_call::status::host_call;
                }
            }
            if (exit.port == HL_PORT_OUTPUT) {
                deliver_output(exit.value);
                continue;
            }
            if (exit.port == HL_PORT_ABORT) throw_abort(exit.value);
            poison_and_throw(errc::protocol_error,
                             util::strfmt("the guest wrote 0x%x to I/O port 0x%x, which the library does not serve",
                                          exit.value, exit.port));
        case vmm::vm_exit::kind::shutdown:
            if (image_->kind == loader::guest_kind::linux_program && serve_system_call(c)) continue;
            throw_fault();
        case vmm::vm_exit::kind::interrupted: continue;  // stop_reason() tells why, or it was a stray signal
        case vmm::vm_exit::kind::io_in:
            settle_vcpu();
            poison_and_throw(errc::protocol_error, util::strfmt("the guest read from I/O port 0x%x", exit.port));
        case vmm::vm_exit::kind::mmio:
            settle_vcpu();
            poison_and_throw(errc::guest_fault, util::strfmt("the guest accessed unbacked physical address 0x%llx",
                                                             static_cast<unsigned long long>(exit.address)) +
                                                    crash_dump(SIGBUS));
        case vmm::vm_exit::kind::internal_error:
            poison_and_throw(errc::vm_error, util::strfmt("KVM internal error (suberror %u) at rip 0x%llx", exit.detail,
                                                          static_cast<unsigned long long>(vm_->regs().rip)));
        case vmm::vm_exit::kind::other:
            poison_and_throw(errc::vm_error, util::strfmt("unexpected KVM exit reason %u", exit.detail));
        }
    }
}

return_value sandbox_core::read_result(std::string_view name, value_type return_type) {
    protocol::call_result result;
    try {
        result = protocol::decode_result(buffers_.message("result"));
    } catch (const poisoning& p) {
        poison_and_throw(p);
    } catch (const error& e) {
        poison_and_throw(errc::protocol_error, e.what());
    }
    if (result.error) {
        const auto& e = *result.error;
        const errc code = errc_for(e.kind);
        if (code == errc::protocol_error) poison_and_throw(code, "the guest could not read the call: " + e.message);
        if (code == errc::guest_error) {
            throw error(code, util::strfmt("guest function '%s' failed with code %d: %s",
                                           util::name_for_message(name).c_str(), e.code, e.message.c_str()));
        }
        throw error(code, e.message);
    }
    if (type_of(result.value) != return_type) {
        poison_and_throw(errc::protocol_error,
                         util::strfmt("'%s' returned %s where %s was asked for", util::name_for_message(name).c_str(),
                                      type_name(type_of(result.value)), type_name(return_type)));
    }
    return std::move(result.value);
}

}  // namespace hl::detail
