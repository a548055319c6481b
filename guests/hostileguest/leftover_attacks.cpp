// SPDX-License-Identifier: Apache-2.0
// What a task can leave behind for the next one besides general registers: FPU, vector and
// segment-base state, and data in memory the host or the guest wrote. restore() must put it all back.
#include <cstdint>
#include <cstring>
#include <string>

#include "hostile.hpp"

namespace {

using namespace hostile;

// x87, SSE and MXCSR state: a secret in xmm15 and on the x87 stack, odd rounding modes.
void set_fpu_state(std::int64_t secret) {
    const std::uint32_t mxcsr = 0x1f80 | 0x6000 | 0x8000 | 0x40;  // round toward zero, FTZ, DAZ
    const std::uint16_t fcw = 0x0f7f;                             // round toward zero, 64-bit precision
    __asm__ volatile("ldmxcsr %0\n\tfldcw %1\n\tmovq %2, %%xmm15\n\tfildll %3\n\tfildll %3"
                     : : "m"(mxcsr), "m"(fcw), "r"(secret), "m"(secret) : "xmm15", "memory");
}
std::int64_t read_mxcsr() {
    std::uint32_t v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}
std::int64_t read_fcw() {
    std::uint16_t v;
    __asm__ volatile("fnstcw %0" : "=m"(v));
    return v;
}
std::int64_t read_fsw() {
    std::uint16_t v;
    __asm__ volatile("fnstsw %0" : "=m"(v));
    return v;
}
std::int64_t read_xmm15() {
    std::int64_t v;
    __asm__ volatile("movq %%xmm15, %0" : "=r"(v));
    return v;
}

void write_at(std::int64_t address, std::int64_t value) {
    *reinterpret_cast<volatile std::int64_t*>(static_cast<std::uintptr_t>(address)) = value;
}

// AVX-512 state, where the host has AVX-512: the guest's XCR0 enables what the host's does.
void set_avx512_state(std::int64_t secret) {
    __asm__ volatile("vpbroadcastq %0, %%zmm31\n\tkmovw %k0, %%k7\n\tvpbroadcastq %0, %%ymm14"
                     : : "r"(secret) : "xmm14", "memory");
}
std::int64_t read_zmm31_high() {  // the top quadword: beyond what SSE and AVX state hold
    std::int64_t v;
    __asm__ volatile("vextracti32x4 $3, %%zmm31, %%xmm0\n\tvpextrq $1, %%xmm0, %0" : "=r"(v) : : "xmm0");
    return v;
}
std::int64_t read_k7() {
    std::uint32_t v;
    __asm__ volatile("kmovw %%k7, %0" : "=r"(v));
    return v;
}
std::int64_t read_ymm14_high() {
    std::int64_t v;
    __asm__ volatile("vextracti128 $1, %%ymm14, %%xmm13\n\tvmovq %%xmm13, %0" : "=r"(v) : : "xmm13");
    return v;
}

// FS and GS bases (wrfsbase works at CPL3 under PVM; see read_through_fs_base).
void set_segment_bases(std::int64_t value) {
    __asm__ volatile("wrfsbase %0\n\twrgsbase %0" : : "r"(value) : "memory");
}
std::int64_t read_fs_base() {
    std::int64_t v;
    __asm__ volatile("rdfsbase %0" : "=r"(v));
    return v;
}
std::int64_t read_gs_base() {
    std::int64_t v;
    __asm__ volatile("rdgsbase %0" : "=r"(v));
    return v;
}

// Data the next task must never see, spread over 64 pages so that restore copies some and the
// dirty log keeps others "hot".
alignas(4096) std::uint64_t vault[64 * 512];
void fill_vault(std::int64_t secret, std::int64_t pattern) {
    for (int page = 0; page < 64; ++page) {
        if (((page + pattern) % 3) != 0 || page < 2) vault[page * 512 + (pattern % 512)] = static_cast<std::uint64_t>(secret);
    }
}
std::int64_t vault_sum() {
    std::uint64_t sum = 0;
    for (const auto v : vault) sum |= v;
    return static_cast<std::int64_t>(sum);
}

// Counts the bytes equal to `needle[0]` in the whole input buffer, past this call's own message: what
// the host wrote there for an earlier task must be gone.
std::int64_t count_in_input(std::string needle) {
    const hl_peb* peb = hl_get_peb();
    const auto* in = reinterpret_cast<const unsigned char*>(peb->input_addr);
    std::uint64_t own;
    std::memcpy(&own, in, sizeof own);
    std::int64_t n = 0;
    for (std::uint64_t i = HL_BUFFER_HEADER_SIZE + own; i < peb->input_size; ++i) n += in[i] == static_cast<unsigned char>(needle[0]);
    return n;
}

}  // namespace

void hostile::register_leftover_attacks() {
    using hl::guest::register_function;
    register_function<set_fpu_state>("SetFpuState");
    register_function<read_mxcsr>("ReadMxcsr");
    register_function<read_fcw>("ReadFcw");
    register_function<read_fsw>("ReadFsw");
    register_function<read_xmm15>("ReadXmm15");
    register_function<write_at>("WriteAt");
    register_function<set_avx512_state>("SetAvx512State");
    register_function<read_zmm31_high>("ReadZmm31High");
    register_function<read_k7>("ReadK7");
    register_function<read_ymm14_high>("ReadYmm14High");
    register_function<set_segment_bases>("SetSegmentBases");
    register_function<read_fs_base>("ReadFsBase");
    register_function<read_gs_base>("ReadGsBase");
    register_function<fill_vault>("FillVault");
    register_function<vault_sum>("VaultSum");
    register_function<count_in_input>("CountInInput");
}
