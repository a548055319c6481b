// SPDX-License-Identifier: Apache-2.0
#include "guest_code_program.hpp"

#include <initializer_list>
#include <iterator>

namespace hl::fuzz {
namespace {

// Instructions that end, divert or reconfigure a CPL3 guest: each must end in a documented way.
constexpr std::initializer_list<std::uint8_t> specials[] = {
    {0x0f, 0x05},                                            // syscall
    {0x0f, 0x34},                                            // sysenter
    {0xcc},                                                  // int3
    {0xcd, 0x80},                                            // int 0x80
    {0xcd, 0x03},                                            // int 3, long form
    {0xf1},                                                  // icebp
    {0x0f, 0x0b},                                            // ud2
    {0xf4},                                                  // hlt
    {0x0f, 0xa2},                                            // cpuid
    {0x0f, 0x31},                                            // rdtsc
    {0x0f, 0x32},                                            // rdmsr
    {0x0f, 0x30},                                            // wrmsr
    {0xfa},                                                  // cli
    {0xfb},                                                  // sti
    {0x9c, 0x48, 0x81, 0x0c, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9d},  // set TF: single-step
    {0x9c, 0x48, 0x81, 0x0c, 0x24, 0x00, 0x00, 0x04, 0x00, 0x9d},  // set AC
    {0x8c, 0xd0, 0x8e, 0xd0},                                // mov eax, ss; mov ss, eax: an interrupt shadow
    {0xf3, 0x48, 0x0f, 0xae, 0xd0},                          // wrfsbase rax
    {0xf3, 0x48, 0x0f, 0xae, 0xdb},                          // wrgsbase rbx
    {0x0f, 0x01, 0xf8},                                      // swapgs
    {0x48, 0xcf},                                            // iretq
    {0x0f, 0x01, 0x10},                                      // lgdt [rax]
    {0x0f, 0x01, 0x00},                                      // sgdt [rax]
    {0x0f, 0x01, 0x38},                                      // invlpg [rax]
    {0x0f, 0x22, 0xd8},                                      // mov cr3, rax
    {0x0f, 0x20, 0xc0},                                      // mov rax, cr0
    {0x0f, 0x00, 0xd8},                                      // ltr ax
    {0x0f, 0xae, 0x20},                                      // xsave [rax]
    {0x0f, 0xae, 0x28},                                      // xrstor [rax]
    {0x0f, 0xae, 0x08},                                      // fxrstor [rax]
    {0x0f, 0xae, 0x10},                                      // ldmxcsr [rax]
    {0x0f, 0x01, 0xd1},                                      // xsetbv
    {0x0f, 0x01, 0xef},                                      // wrpkru
    {0xdb, 0xe3, 0xd9, 0xe8},                                // fninit; fld1
    {0x31, 0xc9, 0xf7, 0xf1},                                // xor ecx, ecx; div ecx
    {0x0f, 0x01, 0xc1},                                      // vmcall
    {0x0f, 0x01, 0xd9},                                      // vmmcall
    {0x0f, 0x01, 0xc8},                                      // monitor
    {0x66, 0x48, 0x0f, 0x6e, 0xf8},                          // movq xmm7, rax
    {0x66, 0x4c, 0x0f, 0x6e, 0xf8},                          // movq xmm15, rax
    {0xc5, 0xfc, 0x77},                                      // vzeroall
    {0x48, 0x94},                                            // xchg rsp, rax: a stack pivot
    {0xc3},                                                  // ret
    {0xff, 0xe0},                                            // jmp rax
    {0xff, 0xd3},                                            // call rbx
    {0xc9},                                                  // leave
    {0xf3, 0xaa},                                            // rep stosb
    {0xf3, 0x48, 0xa5},                                      // rep movsq
    {0xe4, 0x80},                                            // in al, 0x80
    {0xe6, 0x80},                                            // out 0x80, al
};

// Registers usable as a base with a disp32 and no SIB byte: all but rsp and r12.
constexpr std::uint8_t bases[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15};
constexpr std::uint16_t ports[] = {0x100, 0x104, 0x108, 0x10c, 0x101, 0x10f, 0x110, 0x80};

class reader {
public:
    explicit reader(std::span<const std::uint8_t> in) : in_(in) {}
    bool done() const { return at_ >= in_.size(); }
    std::uint8_t byte() { return done() ? 0 : in_[at_++]; }
    std::uint32_t u32() {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t{byte()} << (8 * i);
        return v;
    }
    std::uint64_t u64() { return u32() | std::uint64_t{u32()} << 32; }

private:
    std::span<const std::uint8_t> in_;
    std::size_t at_ = 0;
};

class emitter {
public:
    void put(std::initializer_list<std::uint8_t> b) { out.insert(out.end(), b); }
    void u16(std::uint16_t v) { put({static_cast<std::uint8_t>(v), static_cast<std::uint8_t>(v >> 8)}); }
    void u32(std::uint32_t v) {
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    void u64(std::uint64_t v) { u32(static_cast<std::uint32_t>(v)), u32(static_cast<std::uint32_t>(v >> 32)); }
    // REX.W with the R and B bits for `reg` and `base`.
    void rex_w(std::uint8_t reg, std::uint8_t base) {
        out.push_back(static_cast<std::uint8_t>(0x48 | ((reg & 8) ? 4 : 0) | ((base & 8) ? 1 : 0)));
    }
    void modrm_disp32(std::uint8_t reg, std::uint8_t base, std::uint32_t disp) {
        out.push_back(static_cast<std::uint8_t>(0x80 | ((reg & 7) << 3) | (base & 7)));
        u32(disp);
    }
    void set_port(std::uint8_t pick, reader& r) {
        put({0x66, 0xba});  // mov dx, imm16
        u16(pick % 8 == 7 ? static_cast<std::uint16_t>(r.u32()) : ports[pick % std::size(ports)]);
    }
    std::vector<std::uint8_t> out;
};

// A displacement near the base: mostly small and aligned, sometimes anything.
std::uint32_t displacement(reader& r) {
    const std::uint32_t d = r.u32();
    return (d & 0x80000000u) ? d : (d & 0x3ff8u);
}

void emit_one(std::uint8_t op, reader& r, emitter& e) {
    switch (op % 10) {
    case 0: {  // raw bytes
        const int n = 1 + r.byte() % 8;
        for (int i = 0; i < n; ++i) e.put({r.byte()});
        break;
    }
    case 1: {  // mov qword [base + disp], imm32
        const std::uint8_t b = bases[r.byte() % std::size(bases)];
        e.rex_w(0, b);
        e.put({0xc7});
        e.modrm_disp32(0, b, displacement(r));
        e.u32(r.u32());
        break;
    }
    case 2: {  // mov reg, qword [base + disp]
        const std::uint8_t b = bases[r.byte() % std::size(bases)];
        const std::uint8_t reg = bases[r.byte() % std::size(bases)];
        e.rex_w(reg, b);
        e.put({0x8b});
        e.modrm_disp32(reg, b, displacement(r));
        break;
    }
    case 3: {  // movabs reg, imm64
        const std::uint8_t reg = r.byte() % 16;
        e.rex_w(0, reg);
        e.put({static_cast<std::uint8_t>(0xb8 + (reg & 7))});
        e.u64(r.u64());
        break;
    }
    case 4: {  // out: mov dx, port; mov eax, value; out dx, eax|al|ax
        const std::uint8_t pick = r.byte();
        e.set_port(pick, r);
        e.put({0xb8});
        e.u32(r.u32() % 4 == 0 ? r.u32() : pick % 3);
        static constexpr std::initializer_list<std::uint8_t> outs[] = {{0xef}, {0xee}, {0x66, 0xef}, {0xe7, 0x10}};
        e.put(outs[(pick >> 3) % 4]);
        break;
    }
    case 5: {  // in: mov dx, port; in eax|al|ax, dx
        const std::uint8_t pick = r.byte();
        e.set_port(pick, r);
        static constexpr std::initializer_list<std::uint8_t> ins[] = {{0xed}, {0xec}, {0x66, 0xed}, {0xe5, 0x00}};
        e.put(ins[(pick >> 3) % 4]);
        break;
    }
    case 6: {  // string I/O: mov dx, port; mov ecx, count; [std]; [addr32] [rep] ins|outs
        const std::uint8_t pick = r.byte();
        e.set_port(pick, r);
        e.put({0xb9});
        e.u32(r.byte() * 5u);
        if (pick & 0x40) e.put({0xfd});
        if (pick & 0x20) e.put({0x67});
        if (pick & 0x10) e.put({0xf3});
        static constexpr std::uint8_t ops[] = {0x6c, 0x6d, 0x6e, 0x6f};
        e.put({ops[(pick >> 2) & 3]});
        break;
    }
    case 7:
    case 8:
        e.put(specials[r.byte() % std::size(specials)]);
        break;
    case 9: {  // control flow: a short jump (often a loop), loop, or a far-off jump
        const std::uint8_t pick = r.byte();
        if (pick % 3 == 0) {
            e.put({0xeb, r.byte()});
        } else if (pick % 3 == 1) {
            e.put({0xe2, r.byte()});
        } else {
            e.put({0xe9});
            e.u32(r.u32());
        }
        break;
    }
    }
}

}  // namespace

std::vector<std::uint8_t> assemble(std::span<const std::uint8_t> program, std::size_t limit) {
    reader r(program);
    emitter e;
    // The longest template is 10 bytes of specials or 10 of movabs; stop while each still fits.
    while (!r.done() && e.out.size() + 16 <= limit) emit_one(r.byte(), r, e);
    return std::move(e.out);
}

}  // namespace hl::fuzz
