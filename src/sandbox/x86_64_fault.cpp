// SPDX-License-Identifier: Apache-2.0
#include "sandbox/fault.hpp"

#include <capstone/capstone.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hl::detail {
namespace {

constexpr std::uint64_t page_size = 4096;
constexpr std::size_t max_instruction_size = 15;

std::uint64_t page_base(std::uint64_t addr) { return addr & ~(page_size - 1); }

bool canonical(std::uint64_t addr) {
    const std::uint64_t top = addr >> 47;
    return top == 0 || top == 0x1ffff;
}

bool guest_can_execute(const page_info& p) { return p.present && p.user && p.executable; }

std::string hex(std::uint64_t value) {
    std::array<char, 16> digits{};
    auto end = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16).ptr;
    return "0x" + std::string(digits.data(), end);
}

std::string where(const fault_context& ctx, std::uint64_t addr) { return hex(addr) + " (" + ctx.describe(addr) + ")"; }

bool in_guard(const fault_context& ctx, std::uint64_t addr) {
    return addr >= ctx.stack_guard_begin && addr < ctx.stack_guard_end;
}

struct gpr {
    std::uint64_t cpu_state::*field;
    unsigned r64, r32, r16, r8;
};

constexpr std::array<gpr, 16> gprs{{
    {&cpu_state::rax, X86_REG_RAX, X86_REG_EAX, X86_REG_AX, X86_REG_AL},
    {&cpu_state::rbx, X86_REG_RBX, X86_REG_EBX, X86_REG_BX, X86_REG_BL},
    {&cpu_state::rcx, X86_REG_RCX, X86_REG_ECX, X86_REG_CX, X86_REG_CL},
    {&cpu_state::rdx, X86_REG_RDX, X86_REG_EDX, X86_REG_DX, X86_REG_DL},
    {&cpu_state::rsi, X86_REG_RSI, X86_REG_ESI, X86_REG_SI, X86_REG_SIL},
    {&cpu_state::rdi, X86_REG_RDI, X86_REG_EDI, X86_REG_DI, X86_REG_DIL},
    {&cpu_state::rsp, X86_REG_RSP, X86_REG_ESP, X86_REG_SP, X86_REG_SPL},
    {&cpu_state::rbp, X86_REG_RBP, X86_REG_EBP, X86_REG_BP, X86_REG_BPL},
    {&cpu_state::r8, X86_REG_R8, X86_REG_R8D, X86_REG_R8W, X86_REG_R8B},
    {&cpu_state::r9, X86_REG_R9, X86_REG_R9D, X86_REG_R9W, X86_REG_R9B},
    {&cpu_state::r10, X86_REG_R10, X86_REG_R10D, X86_REG_R10W, X86_REG_R10B},
    {&cpu_state::r11, X86_REG_R11, X86_REG_R11D, X86_REG_R11W, X86_REG_R11B},
    {&cpu_state::r12, X86_REG_R12, X86_REG_R12D, X86_REG_R12W, X86_REG_R12B},
    {&cpu_state::r13, X86_REG_R13, X86_REG_R13D, X86_REG_R13W, X86_REG_R13B},
    {&cpu_state::r14, X86_REG_R14, X86_REG_R14D, X86_REG_R14W, X86_REG_R14B},
    {&cpu_state::r15, X86_REG_R15, X86_REG_R15D, X86_REG_R15W, X86_REG_R15B},
}};

/// The zero-extended value of a general register of any width; nullopt for vector and other registers.
std::optional<std::uint64_t> register_value(const cpu_state& cpu, unsigned reg) {
    switch (reg) {
    case X86_REG_AH: return (cpu.rax >> 8) & 0xff;
    case X86_REG_BH: return (cpu.rbx >> 8) & 0xff;
    case X86_REG_CH: return (cpu.rcx >> 8) & 0xff;
    case X86_REG_DH: return (cpu.rdx >> 8) & 0xff;
    case X86_REG_RIZ:
    case X86_REG_EIZ: return 0;
    default: break;
    }
    for (const gpr& g : gprs) {
        const std::uint64_t v = cpu.*g.field;
        if (reg == g.r64) return v;
        if (reg == g.r32) return v & 0xffffffff;
        if (reg == g.r16) return v & 0xffff;
        if (reg == g.r8) return v & 0xff;
    }
    return std::nullopt;
}

std::optional<std::uint64_t> read_value(const fault_context& ctx, std::uint64_t addr, std::size_t size) {
    std::array<std::byte, 8> bytes{};
    size = std::min(size, bytes.size());
    if (ctx.read(addr, std::span(bytes).first(size)) < size) return std::nullopt;
    std::uint64_t value = 0;
    for (std::size_t i = size; i-- > 0;) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    return value;
}

struct insn_free {
    void operator()(cs_insn* insn) const { cs_free(insn, 1); }
};
using insn_ptr = std::unique_ptr<cs_insn, insn_free>;

/// One capstone handle per classification: the fault path is rare, and a handle shared between
/// threads would race on its error state.
class disassembler {
public:
    disassembler() {
        open_ = cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) == CS_ERR_OK;
        if (open_) cs_option(handle_, CS_OPT_DETAIL, CS_OPT_ON);
    }
    ~disassembler() {
        if (open_) cs_close(&handle_);
    }
    disassembler(const disassembler&) = delete;
    disassembler& operator=(const disassembler&) = delete;

    bool open() const { return open_; }

    insn_ptr decode(std::span<const std::byte> bytes, std::uint64_t address) const {
        cs_insn* insn = nullptr;
        const auto* code = reinterpret_cast<const std::uint8_t*>(bytes.data());
        if (cs_disasm(handle_, code, bytes.size(), address, 1, &insn) != 1) return nullptr;
        return insn_ptr(insn);
    }

    std::string_view name(const cs_insn& insn) const {
        const char* n = cs_insn_name(handle_, insn.id);
        return n ? n : "";
    }

private:
    csh handle_ = 0;
    bool open_ = false;
};

bool has_group(const cs_insn& insn, unsigned group) {
    const cs_detail& d = *insn.detail;
    return std::find(d.groups, d.groups + d.groups_count, group) != d.groups + d.groups_count;
}

bool is_one_of(unsigned id, std::initializer_list<unsigned> ids) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

bool starts_with_any(std::string_view name, std::initializer_list<std::string_view> prefixes) {
    return std::any_of(prefixes.begin(), prefixes.end(), [&](std::string_view p) { return name.starts_with(p); });
}

std::string text_of(const cs_insn& insn) {
    std::string text = insn.mnemonic;
    if (insn.op_str[0] != '\0') text += std::string(" ") + insn.op_str;
    return text;
}

/// One memory access the instruction makes, explicit (an operand) or implicit (the stack).
struct access {
    std::uint64_t address = 0;
    std::uint64_t size = 1;
    bool read = false, write = false;
    std::uint64_t alignment = 0;
};

/// Capstone 4 marks many stores whose source is a register (movups, movntdq, vmovaps, pextrb, fstp,
/// stmxcsr, ...) as reads of their memory destination, and cmpxchg as a plain read.
std::uint8_t access_flags(std::string_view name, const cs_x86_op& op, int index) {
    if (name.starts_with("cmpxchg")) return CS_AC_READ | CS_AC_WRITE;
    if (index == 0 && starts_with_any(name, {"mov", "vmov", "pextr", "vpextr", "extractps", "vextract", "stmxcsr",
                                             "vstmxcsr", "fst", "fnst", "fist", "fbstp", "fnsave", "fxsave",
                                             "xsave", "vcvtps2ph", "vmaskmov", "vpmaskmov", "sgdt", "sidt"}))
        return CS_AC_WRITE;
    return op.access != 0 ? op.access : std::uint8_t{CS_AC_READ};
}

std::uint64_t required_alignment(const cs_insn& insn, const cs_x86_op& op) {
    const unsigned id = insn.id;
    if (is_one_of(id, {X86_INS_FXSAVE, X86_INS_FXSAVE64, X86_INS_FXRSTOR, X86_INS_FXRSTOR64})) return 16;
    if (is_one_of(id, {X86_INS_VMOVAPS, X86_INS_VMOVAPD, X86_INS_VMOVDQA, X86_INS_VMOVDQA32, X86_INS_VMOVDQA64,
                       X86_INS_VMOVNTPS, X86_INS_VMOVNTPD, X86_INS_VMOVNTDQ, X86_INS_VMOVNTDQA}))
        return op.size;
    // Legacy (non-VEX) SSE instructions fault on a misaligned 16-byte memory operand, except these.
    if (op.size != 16 || has_group(insn, X86_GRP_AVX) || has_group(insn, X86_GRP_AVX2) ||
        has_group(insn, X86_GRP_AVX512) ||
        is_one_of(id, {X86_INS_MOVUPS, X86_INS_MOVUPD, X86_INS_MOVDQU, X86_INS_LDDQU, X86_INS_PCMPESTRI,
                       X86_INS_PCMPESTRM, X86_INS_PCMPISTRI, X86_INS_PCMPISTRM}))
        return 0;
    for (unsigned g : {X86_GRP_SSE1, X86_GRP_SSE2, X86_GRP_SSE3, X86_GRP_SSSE3, X86_GRP_SSE41, X86_GRP_SSE42,
                       X86_GRP_AES, X86_GRP_PCLMUL, X86_GRP_SHA})
        if (has_group(insn, g)) return 16;
    return 0;
}

/// base + index * scale + disp, wrapped to the address size; nullopt for vector (VSIB) indexes.
std::optional<std::uint64_t> effective_address(const cpu_state& cpu, const cs_insn& insn, const x86_op_mem& mem) {
    const std::uint64_t next = insn.address + insn.size;
    std::uint64_t base = 0, index = 0;
    if (mem.base == X86_REG_RIP || mem.base == X86_REG_EIP) {
        base = next;
    } else if (mem.base != X86_REG_INVALID) {
        auto v = register_value(cpu, mem.base);
        if (!v) return std::nullopt;
        base = *v;
    }
    if (mem.index != X86_REG_INVALID) {
        auto v = register_value(cpu, mem.index);
        if (!v) return std::nullopt;
        index = *v;
    }
    std::uint64_t ea = base + index * static_cast<std::uint64_t>(mem.scale) + static_cast<std::uint64_t>(mem.disp);
    if (insn.detail->x86.addr_size == 4) ea &= 0xffffffff;
    return ea;
}

/// Every access in execution order as far as it matters here: what the instruction reads comes
/// before what it writes (push [m] reads m first, pop [m] reads the stack first).
std::vector<access> accesses_of(const disassembler& dis, const cs_insn& insn, const cpu_state& cpu) {
    std::vector<access> out;
    const std::string_view name = dis.name(insn);
    const cs_x86& x = insn.detail->x86;
    const bool no_access = insn.id == X86_INS_LEA || insn.id == X86_INS_NOP || name.starts_with("prefetch") ||
                           name.starts_with("bnd");
    for (int i = 0; i < x.op_count && !no_access; ++i) {
        const cs_x86_op& op = x.operands[i];
        if (op.type != X86_OP_MEM) continue;
        auto ea = effective_address(cpu, insn, op.mem);
        if (!ea) continue;
        const std::uint8_t flags = access_flags(name, op, i);
        const bool fx = is_one_of(insn.id, {X86_INS_FXSAVE, X86_INS_FXSAVE64, X86_INS_FXRSTOR, X86_INS_FXRSTOR64});
        out.push_back({*ea, fx ? 512u : std::max<std::uint64_t>(op.size, 1), (flags & CS_AC_READ) != 0,
                       (flags & CS_AC_WRITE) != 0, required_alignment(insn, op)});
    }
    if (is_one_of(insn.id, {X86_INS_PUSH, X86_INS_PUSHF, X86_INS_PUSHFQ, X86_INS_CALL, X86_INS_ENTER}))
        out.push_back({cpu.rsp - 8, 8, false, true, 0});
    else if (is_one_of(insn.id, {X86_INS_POP, X86_INS_POPF, X86_INS_POPFQ, X86_INS_RET}))
        out.push_back({cpu.rsp, 8, true, false, 0});
    else if (is_one_of(insn.id, {X86_INS_RETF, X86_INS_RETFQ}))
        out.push_back({cpu.rsp, 16, true, false, 0});
    else if (insn.id == X86_INS_LEAVE)
        out.push_back({cpu.rbp, 8, true, false, 0});
    std::stable_partition(out.begin(), out.end(), [](const access& a) { return a.read; });
    return out;
}

enum class violation { non_canonical, misaligned, page_fault };

struct finding {
    violation what;
    std::uint64_t address;
    bool write = false;
    std::string why;
};

std::optional<finding> check(const fault_context& ctx, const access& a) {
    const std::uint64_t last = a.address + a.size - 1;
    if (!canonical(a.address)) return finding{violation::non_canonical, a.address, false, ""};
    if (last < a.address || !canonical(last)) return finding{violation::non_canonical, page_base(last), false, ""};
    if (a.alignment != 0 && a.address % a.alignment != 0)
        return finding{violation::misaligned, a.address, false,
                       "needs " + std::to_string(a.alignment) + "-byte alignment"};
    for (std::uint64_t addr : {a.address, std::max(a.address, page_base(last))}) {
        const page_info p = ctx.page(addr);
        // For a read-modify-write the read comes first, so an unreadable page is a read fault.
        if (!p.present) return finding{violation::page_fault, addr, !a.read, ""};
        if (!p.user) return finding{violation::page_fault, addr, !a.read, "the page is not accessible to the guest"};
        if (a.write && !p.writable) return finding{violation::page_fault, addr, true, "the page is read-only"};
    }
    return std::nullopt;
}

/// The first access that faults, preferring the one CR2 points at when several would.
std::optional<finding> first_violation(const fault_context& ctx, std::vector<access> accesses) {
    const std::uint64_t cr2 = ctx.cpu.cr2;
    std::optional<finding> first;
    for (const access& a : accesses) {
        auto f = check(ctx, a);
        if (!f) continue;
        if (cr2 != 0 && f->what == violation::page_fault && page_base(f->address) == page_base(cr2)) return f;
        if (!first) first = f;
    }
    if (first || cr2 == 0) return first;
    // CR2 inside an operand that checked clean as a read means the CPU wrote it: capstone's access
    // flags are not trustworthy for every instruction.
    for (access& a : accesses) {
        if (cr2 < a.address || cr2 - a.address >= a.size) continue;
        a.read = false;
        a.write = true;
        if (auto f = check(ctx, a)) return f;
    }
    return std::nullopt;
}

__extension__ typedef __int128 int128;

std::int64_t sign_extend(std::uint64_t v, unsigned bits) {
    return bits == 64 ? static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v << (64 - bits)) >> (64 - bits);
}

enum class division_result { completes, zero_divisor, quotient_overflow };

division_result divide(const cpu_state& cpu, bool is_signed, unsigned size, std::uint64_t divisor) {
    const unsigned bits = size * 8;
    const std::uint64_t mask = bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
    divisor &= mask;
    if (divisor == 0) return division_result::zero_divisor;
    const std::uint64_t low = size == 1 ? cpu.rax & 0xff : cpu.rax & mask;
    const std::uint64_t high = size == 1 ? (cpu.rax >> 8) & 0xff : cpu.rdx & mask;
    bool overflow = false;
    if (!is_signed) {
        overflow = high >= divisor;
    } else {
        const int128 dividend = int128{sign_extend(high, bits)} * (int128{1} << bits) + int128(low);
        const int128 d = sign_extend(divisor, bits);
        const int128 limit = int128{1} << (bits - 1);
        // A range check instead of dividend / -1, which overflows for the most negative dividend.
        if (d == -1) {
            overflow = dividend < -(limit - 1) || dividend > limit;
        } else {
            const int128 q = dividend / d;
            overflow = q < -limit || q > limit - 1;
        }
    }
    return overflow ? division_result::quotient_overflow : division_result::completes;
}

class classifier {
public:
    explicit classifier(const fault_context& ctx) : ctx_(ctx) {}

    fault_report run();

private:
    fault_report report(std::string kind, std::optional<std::uint64_t> address, const std::string& headline,
                        const std::string& detail, hl::errc code = hl::errc::guest_fault) const {
        fault_report r{code, std::move(kind), ctx_.cpu.rip, address, instruction_, {}};
        r.message = headline + " at rip " + hex(ctx_.cpu.rip);
        if (!instruction_.empty()) r.message += ": " + instruction_;
        if (!detail.empty()) r.message += " (" + detail + ")";
        return r;
    }

    std::optional<fault_report> fetch_fault();
    std::optional<fault_report> special_instruction(const cs_insn& insn) const;
    std::optional<fault_report> division(const cs_insn& insn) const;
    std::optional<fault_report> bad_branch_target(const cs_insn& insn) const;
    fault_report memory_fault(const finding& f) const;
    fault_report fallback() const;

    const fault_context& ctx_;
    disassembler dis_;
    insn_ptr insn_;
    std::string instruction_;
};

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
        instruction_ = text_of(*insn_);
        return std::nullopt;
    }
    // Bytes that decode once the missing tail is filled in are an instruction cut off by the page
    // after it; bytes that never decode are an invalid opcode.
    if (size < bytes.size()) {
        std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(size), bytes.end(), std::byte{0});
        if (auto whole = dis_.decode(bytes, rip); whole && whole->size > size) {
            const std::uint64_t next = rip + size;
            const page_info np = ctx_.page(next);
            const char* next_why = !np.present ? "not mapped"
                                   : !np.user  ? "not accessible to the guest"
                                               : "not executable";
            return report("page fault (execute)", next, "page fault executing " + where(ctx_, next),
                          std::string("the instruction continues into a page that is ") + next_why);
        }
    }
    std::string shown;
    for (std::size_t i = 0; i < std::min<std::size_t>(size, 8); ++i) {
        const auto b = std::to_integer<unsigned>(bytes[i]);
        shown += std::string(i ? " " : "") + "0123456789abcdef"[b >> 4] + "0123456789abcdef"[b & 0xf];
    }
    return report("invalid opcode", std::nullopt, "invalid opcode",
                  "undecodable bytes " + (shown.empty() ? "none" : shown));
}

std::optional<fault_report> classifier::special_instruction(const cs_insn& insn) const {
    const unsigned id = insn.id;
    if (is_one_of(id, {X86_INS_UD2, X86_INS_UD2B, X86_INS_UD0}))
        return report("invalid opcode", std::nullopt, "invalid opcode", "");
    if (is_one_of(id, {X86_INS_SYSCALL, X86_INS_SYSENTER}))
        return report("invalid opcode (system calls are not available to guests)", std::nullopt, "invalid opcode",
                      "system calls are not available to guests");
    if (is_one_of(id, {X86_INS_INT3, X86_INS_INT, X86_INS_INT1, X86_INS_INTO}))
        return report("software interrupt (guests have no interrupt handlers)", std::nullopt, "software interrupt",
                      "guests have no interrupt handlers");

    const std::string kind = "general protection (privileged instruction)";
    const bool is_in = is_one_of(id, {X86_INS_IN, X86_INS_INSB, X86_INS_INSW, X86_INS_INSD});
    if (is_in || is_one_of(id, {X86_INS_OUT, X86_INS_OUTSB, X86_INS_OUTSW, X86_INS_OUTSD})) {
        std::uint64_t port = ctx_.cpu.rdx & 0xffff;
        const cs_x86& x = insn.detail->x86;
        for (int i = 0; i < x.op_count; ++i)
            if (x.operands[i].type == X86_OP_IMM) port = static_cast<std::uint64_t>(x.operands[i].imm) & 0xff;
        return report(kind, std::nullopt, "general protection",
                      std::string("I/O ") + (is_in ? "from" : "to") + " port " + hex(port) + " not permitted");
    }
    bool control_register = false;
    const cs_x86& x = insn.detail->x86;
    for (int i = 0; i < x.op_count; ++i)
        if (x.operands[i].type == X86_OP_REG && x.operands[i].reg >= X86_REG_CR0 && x.operands[i].reg <= X86_REG_DR15)
            control_register = true;
    const bool privileged =
        control_register || has_group(insn, X86_GRP_PRIVILEGE) || has_group(insn, X86_GRP_IRET) ||
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
        divisor = register_value(ctx_.cpu, op.reg);
        divisor_name = std::string("the divisor ") + insn.op_str;
    } else if (op.type == X86_OP_MEM) {
        address = effective_address(ctx_.cpu, insn, op.mem);
        if (!address) return std::nullopt;
        if (auto f = check(ctx_, access{*address, size, true, false, 0})) return memory_fault(*f);
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
        if (op.type == X86_OP_REG) target = register_value(ctx_.cpu, op.reg);
        if (op.type == X86_OP_MEM)
            if (auto ea = effective_address(ctx_.cpu, insn, op.mem)) target = read_value(ctx_, *ea, 8);
    }
    if (!target || canonical(*target)) return std::nullopt;
    return report("general protection (non-canonical address " + hex(*target) + ")", *target, "general protection",
                  "jump to non-canonical address " + hex(*target));
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
    if (cr2 != 0 && in_guard(ctx_, cr2))
        return report("stack overflow", cr2, "stack overflow: touched " + hex(cr2) + " in the stack guard page", "",
                      hl::errc::stack_overflow);
    if (in_guard(ctx_, rsp))
        return report("stack overflow", std::nullopt, "stack overflow: rsp " + hex(rsp) + " is in the stack guard page",
                      "", hl::errc::stack_overflow);
    if (cr2 != 0)
        return report("page fault", cr2, "page fault on " + where(ctx_, cr2),
                      "the instruction's own operands do not explain the access");
    return report("general protection", std::nullopt, "general protection",
                  instruction_.empty() ? "the instruction could not be decoded; the cause could not be determined"
                                       : "the cause could not be determined");
}

fault_report classifier::run() {
    if (auto r = fetch_fault()) return *r;
    if (!insn_) return fallback();
    const cs_insn& insn = *insn_;
    if (auto r = special_instruction(insn)) return *r;
    if (auto r = division(insn)) return *r;
    if (auto f = first_violation(ctx_, accesses_of(dis_, insn, ctx_.cpu))) return memory_fault(*f);
    if (auto r = bad_branch_target(insn)) return *r;
    return fallback();
}

}  // namespace

fault_report classify_fault(const fault_context& ctx) { return classifier(ctx).run(); }

}  // namespace hl::detail
