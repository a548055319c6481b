// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mem/address.hpp"

namespace hl::mem {
class guest_memory;
}

namespace hl::loader {

/// Page permissions as bit flags. A value with no bits set means "no access".
enum class access : std::uint8_t { read = 1, write = 2, execute = 4 };

constexpr access operator|(access a, access b) noexcept {
    return static_cast<access>(static_cast<std::uint8_t>(a) | static_cast<std::uint8_t>(b));
}

/// True when every bit of `flag` is set in `set`.
constexpr bool has(access set, access flag) noexcept {
    return (static_cast<std::uint8_t>(set) & static_cast<std::uint8_t>(flag)) == static_cast<std::uint8_t>(flag);
}

/// A page-granular piece of the loaded image with one set of permissions.
struct segment {
    std::uint64_t offset;  ///< page-aligned start, relative to the image base
    std::uint64_t size;    ///< page-rounded size, never 0
    access perms;          ///< from p_flags; PT_GNU_RELRO pages are plain `read`

    friend bool operator==(const segment&, const segment&) = default;
};

/// What a guest binary is. A freestanding guest is entered at hl_entry(peb, op) and makes no
/// system calls; a Linux program (the SDK's glibc and musl flavours, marked by its note) is started
/// like a Linux process, relocates itself, and has its system calls served by the host.
enum class guest_kind : std::uint8_t { freestanding, linux_program };

/// The largest image (page-rounded end of the highest PT_LOAD) a guest may have.
inline constexpr std::uint64_t max_image_size = std::uint64_t{1} << 30;

/// A validated static-PIE ELF64 x86-64 guest (ET_DYN, no PT_INTERP, no DT_NEEDED; a freestanding
/// guest has no PT_TLS and only R_X86_64_RELATIVE relocations, a Linux program may have PT_TLS and
/// R_X86_64_IRELATIVE too and relocates itself), ready to be copied to any page-aligned guest address.
///
/// Offsets are relative to ELF virtual address 0, even when the lowest PT_LOAD starts above it.
/// Immutable after parse(); all const members may be called from several threads at once.
class elf_image {
public:
    /// Parses and validates `file`, including every relocation, so that load() cannot fail on the
    /// result. Never allocates more than a small multiple of the file's size.
    /// Throws hl::error(errc::invalid_guest) with a message naming the offending header, entry or
    /// relocation and its offsets.
    static elf_image parse(std::vector<std::byte> file);

    /// Page-rounded end of the highest PT_LOAD; at most max_image_size.
    std::uint64_t image_size() const noexcept { return image_size_; }

    /// Offset of the entry point; always inside an executable PT_LOAD.
    std::uint64_t entry_offset() const noexcept { return entry_offset_; }

    /// Sorted by offset, non-overlapping, page granular. Pages of the image not covered by any
    /// segment are gaps that should stay unmapped. Adjacent segments may have the same perms.
    std::span<const segment> segments() const& noexcept { return segments_; }
    std::span<const segment> segments() const&& = delete;  // the span would dangle

    guest_kind kind() const noexcept { return kind_; }

    /// Offset of the program headers in the loaded image (AT_PHDR), 0 when no PT_LOAD holds them,
    /// and their number (AT_PHNUM).
    std::uint64_t phdr_offset() const noexcept { return phdr_offset_; }
    std::uint64_t phdr_count() const noexcept { return phdr_count_; }

    /// Number of R_X86_64_RELATIVE relocations load() applies (R_X86_64_NONE entries not counted).
    std::size_t relocation_count() const noexcept { return relocations_.size(); }

    /// Loads the image into `memory` at the page-aligned guest address `at`, writing only the PT_LOAD
    /// file bytes and the relocated words, through guest_memory::writable(). Precondition: every byte
    /// of [at, at + image_size()) is zero already, as in fresh guest memory; the pages that hold
    /// only zeros (bss, gaps between segments) are neither written nor marked host-written, so a
    /// small file with a huge bss costs no memory until the guest writes there. Throws
    /// std::invalid_argument for an unaligned `at`, hl::error(errc::protocol_error) when the image
    /// does not fit in `memory`, and hl::error(errc::invalid_guest) on a bad relocation (cannot
    /// happen after a successful parse()).
    void load(mem::guest_memory& memory, mem::gpa at) const;

    /// As above, into `dest` (any contents), as if it were placed at guest address `base`: zero-fills
    /// everything that is not file bytes. Preconditions: dest.size() == image_size() and `base` is
    /// page-aligned; otherwise throws std::invalid_argument.
    void load(std::span<std::byte> dest, std::uint64_t base) const;

private:
    struct file_copy {
        std::uint64_t file_offset;
        std::uint64_t image_offset;
        std::uint64_t size;
    };
    struct relocation {
        std::uint64_t offset;  ///< where the 8-byte pointer goes, relative to the image base
        std::uint64_t addend;  ///< r_addend as two's complement; the pointer is base + addend
    };

    elf_image() = default;

    /// Writes the file bytes and relocations for an image at `base` through writable(offset, size),
    /// which returns the destination bytes at that image offset.
    template <class Writable>
    void write_contents(Writable&& writable, std::uint64_t base) const;

    std::vector<std::byte> file_;
    std::vector<file_copy> copies_;
    std::vector<segment> segments_;
    std::vector<relocation> relocations_;
    std::uint64_t image_size_ = 0;
    std::uint64_t entry_offset_ = 0;
    std::uint64_t phdr_offset_ = 0;
    std::uint64_t phdr_count_ = 0;
    guest_kind kind_ = guest_kind::freestanding;
};

}  // namespace hl::loader
