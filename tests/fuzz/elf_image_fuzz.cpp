// SPDX-License-Identifier: Apache-2.0
// The ELF loader on hostile files: parse() either refuses with invalid_guest or returns an image
// whose every promise holds, and which then loads without failing.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_support.hpp"
#include "loader/elf_image.hpp"

namespace {

using hl::loader::access;
using hl::loader::elf_image;
constexpr std::uint64_t page = 4096;
// Loading into a host buffer: bigger images are checked but not loaded, to keep each run fast.
constexpr std::uint64_t load_limit = std::uint64_t{16} << 20;

void check(const elf_image& image) {
    using hl::fuzz::expect;
    expect(image.image_size() > 0 && image.image_size() % page == 0, "image size not whole pages");
    expect(image.image_size() <= hl::loader::max_image_size, "image larger than max_image_size");
    std::uint64_t end = 0;
    bool entry_executable = false;
    for (const auto& s : image.segments()) {
        expect(s.offset % page == 0 && s.size % page == 0 && s.size > 0, "segment not page granular");
        expect(s.offset >= end, "segments overlap or are unsorted");
        expect(s.offset + s.size <= image.image_size(), "segment beyond the image");
        expect(!(has(s.perms, access::write) && has(s.perms, access::execute)), "segment both writable and executable");
        if (image.entry_offset() >= s.offset && image.entry_offset() < s.offset + s.size) {
            entry_executable = has(s.perms, access::execute);
        }
        end = s.offset + s.size;
    }
    expect(entry_executable, "entry point outside an executable segment");
    if (image.image_size() > load_limit) return;
    // Two different bases: load() must succeed on any image parse() accepted.
    std::vector<std::byte> a(image.image_size(), std::byte{0xa5});
    std::vector<std::byte> b(image.image_size());
    image.load(a, 0x200000);
    image.load(b, 0x40000000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> file(size);
    if (size) std::memcpy(file.data(), data, size);
    try {
        check(elf_image::parse(std::move(file)));
    } catch (const hl::error& e) {
        hl::fuzz::expect_code(e, hl::errc::invalid_guest);
    }
    return 0;
}
