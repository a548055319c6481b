// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <capstone/capstone.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/fault.hpp"

namespace hl::detail::x86 {

struct insn_free {
    void operator()(cs_insn* insn) const { cs_free(insn, 1); }
};
using insn_ptr = std::unique_ptr<cs_insn, insn_free>;

/// A capstone handle for 64-bit code with instruction details. Not thread-safe (capstone keeps its
/// error state in the handle): make one per classification.
class disassembler {
public:
    disassembler();
    ~disassembler();
    disassembler(const disassembler&) = delete;
    disassembler& operator=(const disassembler&) = delete;

    /// False if capstone could not be opened; decode() must not be called then.
    bool open() const { return open_; }
    /// The first instruction in bytes, placed at address; nullptr if they do not decode.
    insn_ptr decode(std::span<const std::byte> bytes, std::uint64_t address) const;
    /// Capstone's name for the instruction ("movups"), "" if it has none.
    std::string_view name(const cs_insn& insn) const;

private:
    csh handle_ = 0;
    bool open_ = false;
};

bool has_group(const cs_insn& insn, unsigned group);
bool is_one_of(unsigned id, std::initializer_list<unsigned> ids);
/// "mov dword ptr [rax], 1"
std::string text_of(const cs_insn& insn);

/// The zero-extended value of a general register of any width; nullopt for vector and other registers.
std::optional<std::uint64_t> register_value(const cpu_state& cpu, unsigned reg);

/// The linear address of a memory operand: base + index * scale + disp, wrapped to the address size,
/// plus the FS or GS base for those segments (64-bit mode ignores the other segments' bases);
/// nullopt for vector (VSIB) indexes.
std::optional<std::uint64_t> effective_address(const cpu_state& cpu, const cs_insn& insn, const x86_op_mem& mem);

/// One memory access the instruction makes, explicit (an operand) or implicit (the stack).
struct access {
    std::uint64_t address = 0;
    std::uint64_t size = 1;
    bool read = false, write = false;
    std::uint64_t alignment = 0;  ///< SSE alignment whose violation is a #GP; 0 for none
};

/// Every access in execution order as far as it matters here: what the instruction reads comes
/// before what it writes (push [m] reads m first, pop [m] reads the stack first).
std::vector<access> accesses_of(const disassembler& dis, const cs_insn& insn, const cpu_state& cpu);

}  // namespace hl::detail::x86
