// SPDX-License-Identifier: Apache-2.0
#include "sandbox/fault.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>
#include <vector>

#include "sandbox/x86_64_access.hpp"
#include "sandbox/x86_64_instruction.hpp"

namespace hl::detail {
namespace {

using x86::canonical;
using x86::check;
using x86::divide;
using x86::division_result;
using x86::fault_at_cr2;
using x86::finding;
using x86::first_violation;
using x86::guest_can_execute;
using x86::page_size;
using x86::read_value;
using x86::violation;

constexpr std::size_t max_instruction_size = 15;

std::string hex(std::uint64_t value) {
    std::array<char, 16> digits{};
    auto end = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16).ptr;
    return "0x" + std::string(digits.data(), end);
}

std::string where(const fault_context& ctx, std::uint64_t addr) { return hex(addr) + " (" + ctx.describe(addr) + ")"; }

bool in_guard(const fault_context& ctx, std::uint64_t addr) {
    return addr >= ctx.stack_guard_begin && addr < ctx.stack_guard_end;
}

constexpr std::uint64_t rflags_tf = 1u << 8, rflags_ac = 1u << 18;
using vmm::syscall_entry;

/// True when the two bytes at `at` are a `syscall` (0f 05) the guest may execute.
bool is_syscall_at(const fault_context& ctx, std::uint64_t at) {
    std::array<std::byte, 2> bytes{};
    return at + 2 > at && guest_can_execute(ctx.page(at)) && guest_can_execute(ctx.page(at + 1)) &&
           ctx.read(at, bytes) == 2 && bytes == std::array{std::byte{0x0f}, std::byte{0x05}};
}

/// One legacy opcode that 64-bit mode removed (push es, pusha, aaa, into, jmp far, ...), after any
/// prefixes: the CPU raises #UD for it, so capstone failing to decode it is no surprise.
bool removed_in_64_bit_mode(std::span<const std::byte> bytes) {
    for (const std::byte b : bytes) {
        const auto op = std::to_integer<unsigned>(b);
        const bool prefix = op == 0x66 || op == 0x67 || op == 0xf0 || op == 0xf2 || op == 0xf3 || op == 0x26 ||
                            op == 0x2e || op == 0x36 || op == 0x3e || op == 0x64 || op == 0x65 || (op & 0xf0) == 0x40;
        if (prefix) continue;
        return x86::is_one_of(op, {0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x82,
                                   0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea});
    }
    return false;
}

std::string hex_bytes(std::span<const std::byte> bytes) {
    std::string shown;
    for (const std::byte byte : bytes) {
        const auto b = std::to_integer<unsigned>(byte);
        shown += std::string(shown.empty() ? "" : " ") + "0123456789abcdef"[b >> 4] + "0123456789abcdef"[b & 0xf];
    }
    return shown.empty() ? "none" : shown;
}

class classifier {
public:
    explicit classifier(const fault_context& ctx) : ctx_(ctx) {}

    fault_report run();

private:
    /// "<headline> at rip <at>: <instruction> (<detail>)"
    fault_report report_at(std::uint64_t at, std::string instruction, std::string kind,
                           std::optional<std::uint64_t> address, const std::string& headline,
                           const std::string& detail, hl::errc code = hl::errc::guest_fault) const {
        fault_report r{code, std::move(kind), at, address, std::move(instruction), {}};
        r.message = headline + " at rip " + hex(at);
        if (!r.instruction.empty()) r.message += ": " + r.instruction;
        if (!detail.empty()) r.message += " (" + detail + ")";
        return r;
    }
    fault_report report(std::string kind, std::optional<std::uint64_t> address, const std::string& headline,
                        const std::string& detail, hl::errc code = hl::errc::guest_fault) const {
        return report_at(ctx_.cpu.rip, instruction_, std::move(kind), address, headline, detail, code);
    }

    std::optional<fault_report> system_call() const;
    std::optional<fault_report> fetch_fault();
    bool just_set_trap_flag() const;
    fault_report single_step_trap() const;
    std::optional<fault_report> breakpoint_trap() const;
    std::optional<fault_report> instruction_fault(const cs_insn& insn) const;
    std::optional<fault_report> special_instruction(const cs_insn& insn) const;
    std::optional<fault_report> division(const cs_insn& insn) const;
    std::optional<fault_report> bad_branch_target(const cs_insn& insn) const;
    std::optional<fault_report> alignment_check(const std::vector<x86::access>& accesses) const;
    fault_report memory_fault(const finding& f) const;
    fault_report fallback() const;

    const fault_context& ctx_;
    x86::disassembler dis_;
    x86::insn_ptr insn_;
    std::string instruction_;
    std::vector<std::byte> undecodable_;  // the bytes at RIP when they do not decode
};

// Under PVM, syscall at CPL3 enters CPL0 at LSTAR even with EFER.SCE clear, and the fetch there
// faults: RIP = LSTAR, RCX = the address after the syscall, RAX = the number. (Hardware KVM
// raises #UD at the syscall itself, which special_instruction names.)
std::optional<fault_report> classifier::system_call() const {
    const cpu_state& cpu = ctx_.cpu;
    if (cpu.rip != syscall_entry || cpu.rcx < 2 || !is_syscall_at(ctx_, cpu.rcx - 2)) return std::nullopt;
    const std::uint64_t at = cpu.rcx - 2;
    return report_at(at, "syscall", "system call", std::nullopt,
                     "the guest made system call " + std::to_string(cpu.rax), "guests cannot make system calls");
}

std::optional<fault_report> classifier::fetch_fault() {
    const std::uint64_t rip = ctx_.cpu.rip;
    const page_info p = ctx_.page(rip);
    const char* why = !p.present ? "the page is not mapped"
                      : !p.user  ? "the page is not accessible to the guest"
                      : !p.executable ? "the page is not executable"
                                      : nullptr;
    if (why) return report("page fault (execute)", rip, "page fault executing " + where(ctx_, rip), why);

    std::array<std::byte, max_instruction_size> bytes{};
    std::size_t size = std::min(ctx_.read(rip, bytes), bytes.size());
    const std::uint64_t to_next_page = page_size - (rip & (page_size - 1));
    if (size > to_next_page && !guest_can_execute(ctx_.page(rip + to_next_page))) size = to_next_page;
    if (!dis_.open()) return std::nullopt;
    insn_ = dis_.decode(std::span(bytes).first(size), rip);
    if (insn_) {
        instruction_ = x86::text_of(*insn_);
        return std::nullopt;
    }
    // Bytes that decode once the missing tail is filled in are an instruction cut off by the page
    // after it.
    if (size < bytes.size()) {
        std::array<std::byte, max_instruction_size> filled = bytes;
        std::fill(filled.begin() + static_cast<std::ptrdiff_t>(size), filled.end(), std::byte{0});
        if (auto whole = dis_.decode(filled, rip); whole && whole->size > size) {
            const std::uint64_t next = rip + size;
            const page_info np = ctx_.page(next);
            const char* next_why = !np.present ? "not mapped"
                                   : !np.user  ? "not accessible to the guest"
                                               : "not executable";
            return report("page fault (execute)", next, "page fault executing " + where(ctx_, next),
                          std::string("the instruction continues into a page that is ") + next_why);
        }
    }
    undecodable_.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(size, 8)));
    return std::nullopt;
}

// popf does not trap on the instruction that sets TF: the trap comes after the next one, so with
// popf just before RIP the instruction at RIP may itself have faulted.
bool classifier::just_set_trap_flag() const {
    std::array<std::byte, 1> before{};
    const std::uint64_t rip = ctx_.cpu.rip;
    return rip != 0 && guest_can_execute(ctx_.page(rip - 1)) && ctx_.read(rip - 1, before) == 1 &&
           before[0] == std::byte{0x9d};
}

fault_report classifier::single_step_trap() const {
    std::string message = "single-step trap before rip " + hex(ctx_.cpu.rip);
    message += instruction_.empty() ? "" : ": " + instruction_ + ", which has not run";
    message += " (the guest set RFLAGS.TF, so the CPU trapped after the instruction before it; guests have no debug "
               "handlers)";
    return {hl::errc::guest_fault, "single-step trap", ctx_.cpu.rip, std::nullopt, "", std::move(message)};
}

// int3, int 3 and icebp are traps: the CPU reports them with RIP after the instruction. (PVM
// reports icebp at the instruction itself, which special_instruction names.)
std::optional<fault_report> classifier::breakpoint_trap() const {
    const std::uint64_t rip = ctx_.cpu.rip;
    std::array<std::byte, 2> before{};
    if (rip < before.size()) return std::nullopt;
    const std::uint64_t from = rip - before.size();
    if (!guest_can_execute(ctx_.page(from)) || !guest_can_execute(ctx_.page(rip - 1)) ||
        ctx_.read(from, before) != before.size())
        return std::nullopt;
    const std::string detail = "guests have no debug handlers; the CPU stopped after it, at rip " + hex(rip);
    if (before[1] == std::byte{0xcc})
        return report_at(rip - 1, "int3", "breakpoint (int3)", std::nullopt, "breakpoint", detail);
    if (before[0] == std::byte{0xcd} && before[1] == std::byte{0x03})
        return report_at(rip - 2, "int 3", "breakpoint (int3)", std::nullopt, "breakpoint", detail);
    if (before[1] == std::byte{0xf1})
        return report_at(rip - 1, "int1", "debug trap (icebp)", std::nullopt, "debug trap", detail);
    return std::nullopt;
}

// The order follows the CPU's: a page fault that CR2 records comes first (outs and ins pass the I/O
// permission check, then fault on their memory operand), then what the instruction itself cannot
// do, then its operands, then alignment checks, which rank below page faults.
std::optional<fault_report> classifier::instruction_fault(const cs_insn& insn) const {
    const std::vector<x86::access> accesses = x86::accesses_of(dis_, insn, ctx_.cpu);
    if (auto f = fault_at_cr2(ctx_, accesses)) return memory_fault(*f);
    if (auto r = special_instruction(insn)) return r;
    if (auto r = division(insn)) return r;
    if (auto f = first_violation(ctx_, accesses)) return memory_fault(*f);
    if (auto r = bad_branch_target(insn)) return r;
    return alignment_check(accesses);
}

std::optional<fault_report> classifier::special_instruction(const cs_insn& insn) const {
    using x86::is_one_of;
    const unsigned id = insn.id;
    if (is_one_of(id, {X86_INS_UD2, X86_INS_UD2B, X86_INS_UD0}))
        return report("invalid opcode", std::nullopt, "invalid opcode", "");
    if (is_one_of(id, {X86_INS_SYSCALL, X86_INS_SYSENTER}))
        return report("invalid opcode (system calls are not available to guests)", std::nullopt, "invalid opcode",
                      "system calls are not available to guests");
    if (id == X86_INS_INT1)  // PVM reports icebp at the instruction; breakpoint_trap handles the others
        return report("debug trap (icebp)", std::nullopt, "debug trap", "guests have no debug handlers");
    if (is_one_of(id, {X86_INS_INT3, X86_INS_INT, X86_INS_INTO}))
        return report("software interrupt (guests have no interrupt handlers)", std::nullopt, "software interrupt",
                      "guests have no interrupt handlers");
    // A hypercall from CPL3 either gets KVM's refusal in RAX (no fault) or faults: #GP under PVM,
    // #UD where the CPU lacks the instruction.
    if (is_one_of(id, {X86_INS_VMCALL, X86_INS_VMMCALL}))
        return report("hypervisor call (guests cannot call the hypervisor)", std::nullopt, "hypervisor call",
                      "guests cannot call the hypervisor");

    const std::string kind = "general protection (privileged instruction)";
    const bool is_in = is_one_of(id, {X86_INS_IN, X86_INS_INSB, X86_INS_INSW, X86_INS_INSD});
    if (is_in || is_one_of(id, {X86_INS_OUT, X86_INS_OUTSB, X86_INS_OUTSW, X86_INS_OUTSD})) {
        std::uint64_t port = ctx_.cpu.rdx & 0xffff;
        std::uint64_t width = 1;  // bytes: the TSS bitmap checks every port the access touches
        if (is_one_of(id, {X86_INS_INSW, X86_INS_OUTSW})) width = 2;
        if (is_one_of(id, {X86_INS_INSD, X86_INS_OUTSD})) width = 4;
        const cs_x86& x = insn.detail->x86;
        for (int i = 0; i < x.op_count; ++i) {
            if (x.operands[i].type == X86_OP_IMM) port = static_cast<std::uint64_t>(x.operands[i].imm) & 0xff;
            if (x.operands[i].type == X86_OP_REG && x.operands[i].reg != X86_REG_DX) width = x.operands[i].size;
        }
        const bool first_allowed = port >= ctx_.io_ports_begin && port < ctx_.io_ports_end;
        if (first_allowed && port + width <= ctx_.io_ports_end) return std::nullopt;
        std::string what = std::string("I/O ") + (is_in ? "from" : "to") + " port " +
                           hex(first_allowed ? ctx_.io_ports_end : port) + " not permitted";
        if (first_allowed) what += " (a " + std::to_string(width) + "-byte access at port " + hex(port) + ")";
        return report(kind, std::nullopt, "general protection", what);
    }
    bool control_register = false;
    const cs_x86& x = insn.detail->x86;
    for (int i = 0; i < x.op_count; ++i)
        if (x.operands[i].type == X86_OP_REG && x.operands[i].reg >= X86_REG_CR0 && x.operands[i].reg <= X86_REG_DR15)
            control_register = true;
    const bool privileged =
        control_register || x86::has_group(insn, X86_GRP_PRIVILEGE) || x86::has_group(insn, X86_GRP_IRET) ||
        is_one_of(id, {X86_INS_HLT, X86_INS_CLI, X86_INS_STI, X86_INS_LGDT, X86_INS_LIDT, X86_INS_LLDT, X86_INS_LTR,
                       X86_INS_LMSW, X86_INS_CLTS, X86_INS_RDMSR, X86_INS_WRMSR, X86_INS_INVD, X86_INS_WBINVD,
                       X86_INS_INVLPG, X86_INS_SWAPGS, X86_INS_SYSRET, X86_INS_SYSEXIT, X86_INS_IRET, X86_INS_IRETD,
                       X86_INS_IRETQ});
    if (privileged)
        return report(kind, std::nullopt, "general protection", "a privileged instruction; guests run in user mode");
    return std::nullopt;
}

std::optional<fault_report> classifier::division(const cs_insn& insn) const {
    const cs_x86& x = insn.detail->x86;
    if ((insn.id != X86_INS_DIV && insn.id != X86_INS_IDIV) || x.op_count < 1) return std::nullopt;
    const cs_x86_op& op = x.operands[0];
    const unsigned size = op.size;
    if (size != 1 && size != 2 && size != 4 && size != 8) return std::nullopt;
    std::optional<std::uint64_t> divisor, address;
    std::string divisor_name;
    if (op.type == X86_OP_REG) {
        divisor = x86::register_value(ctx_.cpu, op.reg);
        divisor_name = std::string("the divisor ") + insn.op_str;
    } else if (op.type == X86_OP_MEM) {
        address = x86::effective_address(ctx_.cpu, insn, op.mem);
        if (!address) return std::nullopt;
        if (auto f = check(ctx_, x86::access{*address, size, true, false, 0})) return memory_fault(*f);
        divisor = read_value(ctx_, *address, size);
        divisor_name = "the divisor at " + where(ctx_, *address);
    }
    if (!divisor) return std::nullopt;
    switch (divide(ctx_.cpu, insn.id == X86_INS_IDIV, size, *divisor)) {
    case division_result::completes: return std::nullopt;
    case division_result::zero_divisor:
        return report("divide error", address, "divide error", divisor_name + " is zero");
    case division_result::quotient_overflow: break;
    }
    return report("divide error", address, "divide error",
                  "the quotient does not fit in the destination register; " + divisor_name + " is " + hex(*divisor));
}

std::optional<fault_report> classifier::bad_branch_target(const cs_insn& insn) const {
    const cs_x86& x = insn.detail->x86;
    std::optional<std::uint64_t> target;
    if (insn.id == X86_INS_RET) {
        target = read_value(ctx_, ctx_.cpu.rsp, 8);
    } else if ((insn.id == X86_INS_JMP || insn.id == X86_INS_CALL) && x.op_count == 1) {
        const cs_x86_op& op = x.operands[0];
        if (op.type == X86_OP_IMM) target = static_cast<std::uint64_t>(op.imm);
        if (op.type == X86_OP_REG) target = x86::register_value(ctx_.cpu, op.reg);
        if (op.type == X86_OP_MEM)
            if (auto ea = x86::effective_address(ctx_.cpu, insn, op.mem)) target = read_value(ctx_, *ea, 8);
    }
    if (!target || canonical(*target)) return std::nullopt;
    return report("general protection (non-canonical address " + hex(*target) + ")", *target, "general protection",
                  "jump to non-canonical address " + hex(*target));
}

// #AC needs CR0.AM as well, which this VM leaves clear; but PVM runs guest code on the host's CR0,
// where Linux sets AM, so RFLAGS.AC alone decides there.
std::optional<fault_report> classifier::alignment_check(const std::vector<x86::access>& accesses) const {
    if ((ctx_.cpu.rflags & rflags_ac) == 0) return std::nullopt;
    for (const x86::access& a : accesses) {
        const std::uint64_t need = a.size == 10 ? 8 : std::min<std::uint64_t>(a.size, 16);
        if (need < 2 || (need & (need - 1)) != 0 || a.address % need == 0) continue;
        return report("alignment check", a.address, "alignment check",
                      "the guest set RFLAGS.AC, and the " + std::to_string(a.size) + "-byte access at " +
                          where(ctx_, a.address) + " is not " + std::to_string(need) + "-byte aligned");
    }
    return std::nullopt;
}

fault_report classifier::memory_fault(const finding& f) const {
    switch (f.what) {
    case violation::non_canonical:
        return report("general protection (non-canonical address " + hex(f.address) + ")", f.address,
                      "general protection", "non-canonical address " + hex(f.address));
    case violation::misaligned:
        return report("general protection (misaligned SSE operand)", f.address,
                      "general protection: misaligned SSE operand at " + where(ctx_, f.address), f.why);
    case violation::page_fault: break;
    }
    const char* verb = f.write ? "wrote " : "read ";
    if (in_guard(ctx_, f.address))
        return report("stack overflow", f.address,
                      std::string("stack overflow: ") + verb + hex(f.address) + " in the stack guard page", "",
                      hl::errc::stack_overflow);
    return report(f.write ? "page fault (write)" : "page fault (read)", f.address,
                  std::string(f.write ? "page fault writing " : "page fault reading ") + where(ctx_, f.address), f.why);
}

fault_report classifier::fallback() const {
    const std::uint64_t cr2 = ctx_.cpu.cr2;
    const std::uint64_t rsp = ctx_.cpu.rsp;
    const std::string undecodable = "the instruction could not be decoded: bytes " + hex_bytes(undecodable_);
    if (cr2 != 0 && in_guard(ctx_, cr2))
        return report("stack overflow", cr2, "stack overflow: touched " + hex(cr2) + " in the stack guard page", "",
                      hl::errc::stack_overflow);
    if (in_guard(ctx_, rsp))
        return report("stack overflow", std::nullopt, "stack overflow: rsp " + hex(rsp) + " is in the stack guard page",
                      "", hl::errc::stack_overflow);
    if (cr2 != 0)
        return report("page fault", cr2, "page fault on " + where(ctx_, cr2),
                      insn_ ? "the instruction's own operands do not explain the access" : undecodable);
    if (!undecodable_.empty())
        return report("undecodable instruction", std::nullopt, "fault on an undecodable instruction",
                      undecodable + "; the CPU may not support it either");
    return report("general protection", std::nullopt, "general protection",
                  instruction_.empty() ? "the instruction could not be decoded; the cause could not be determined"
                                       : "the cause could not be determined");
}

fault_report classifier::run() {
    if (auto r = system_call()) return *r;
    const auto fetch = fetch_fault();
    // A trap ends the run before any page fault could set CR2.
    const bool page_faulted = ctx_.cpu.cr2 != 0;
    const bool stepping = !page_faulted && (ctx_.cpu.rflags & rflags_tf) != 0;
    if (stepping && !just_set_trap_flag()) return single_step_trap();
    if (fetch) return *fetch;
    if (insn_) {
        if (auto r = instruction_fault(*insn_)) return *r;
    } else if (removed_in_64_bit_mode(undecodable_)) {
        return report("invalid opcode", std::nullopt, "invalid opcode",
                      "undecodable bytes " + hex_bytes(undecodable_) + "; the opcode is not valid in 64-bit mode");
    }
    // Nothing at RIP explains a fault, so it may not have run: the instruction before it trapped.
    if (stepping) return single_step_trap();
    if (!page_faulted)
        if (auto r = breakpoint_trap()) return *r;
    return fallback();
}

}  // namespace

std::optional<system_call_site> trapped_system_call(const fault_context& ctx) {
    const cpu_state& cpu = ctx.cpu;
    // PVM: the CPU went to LSTAR, RCX and R11 hold what `syscall` saved.
    if (cpu.rip == syscall_entry) {
        if (cpu.rcx >= 2 && is_syscall_at(ctx, cpu.rcx - 2)) return system_call_site{cpu.rcx, cpu.r11};
        return std::nullopt;
    }
    // Hardware KVM with EFER.SCE clear: #UD at the `syscall` itself. Nothing else stops at those two
    // bytes with no page fault recorded (a fetch fault there would have set CR2).
    if (cpu.cr2 == 0 && is_syscall_at(ctx, cpu.rip)) return system_call_site{cpu.rip + 2, cpu.rflags};
    return std::nullopt;
}

fault_report classify_fault(const fault_context& ctx) { return classifier(ctx).run(); }

}  // namespace hl::detail
