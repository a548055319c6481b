// SPDX-License-Identifier: Apache-2.0
#include "sandbox/x86_64_instruction.hpp"

#include <algorithm>
#include <array>
#include <string>

namespace hl::detail::x86 {
namespace {

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

bool starts_with_any(std::string_view name, std::initializer_list<std::string_view> prefixes) {
    return std::any_of(prefixes.begin(), prefixes.end(), [&](std::string_view p) { return name.starts_with(p); });
}

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

}  // namespace

disassembler::disassembler() {
    open_ = cs_open(CS_ARCH_X86, CS_MODE_64, &handle_) == CS_ERR_OK;
    if (open_) cs_option(handle_, CS_OPT_DETAIL, CS_OPT_ON);
}

disassembler::~disassembler() {
    if (open_) cs_close(&handle_);
}

insn_ptr disassembler::decode(std::span<const std::byte> bytes, std::uint64_t address) const {
    cs_insn* insn = nullptr;
    const auto* code = reinterpret_cast<const std::uint8_t*>(bytes.data());
    if (cs_disasm(handle_, code, bytes.size(), address, 1, &insn) != 1) return nullptr;
    return insn_ptr(insn);
}

std::string_view disassembler::name(const cs_insn& insn) const {
    const char* n = cs_insn_name(handle_, insn.id);
    return n ? n : "";
}

bool has_group(const cs_insn& insn, unsigned group) {
    const cs_detail& d = *insn.detail;
    return std::find(d.groups, d.groups + d.groups_count, group) != d.groups + d.groups_count;
}

bool is_one_of(unsigned id, std::initializer_list<unsigned> ids) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::string text_of(const cs_insn& insn) {
    std::string text = insn.mnemonic;
    if (insn.op_str[0] != '\0') text += std::string(" ") + insn.op_str;
    return text;
}

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
    // The segment base is added after the address-size wrap: fs:[eax] reaches fs_base + eax.
    if (mem.segment == X86_REG_FS) ea += cpu.fs_base;
    if (mem.segment == X86_REG_GS) ea += cpu.gs_base;
    return ea;
}

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

}  // namespace hl::detail::x86
