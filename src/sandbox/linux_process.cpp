// SPDX-License-Identifier: Apache-2.0
#include "sandbox/linux_process.hpp"

#include <cpuid.h>
#include <elf.h>
#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <vector>

#include "hl/error.hpp"
#include "util/strfmt.hpp"

namespace hl::detail {
namespace {

constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t a) noexcept { return v & ~(a - 1); }

// The smallest stack left for operations below the initial stack.
constexpr std::uint64_t min_call_stack = 4096;

std::uint64_t host_hwcap() noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) ? edx : 0;
}

}  // namespace

void host_random(std::span<std::byte> out) {
    std::size_t n = 0;
    while (n < out.size()) {
        const ssize_t got = ::getrandom(out.data() + n, out.size() - n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        n += static_cast<std::size_t>(got);
    }
}

start_stack write_start_stack(mem::guest_memory& memory, const mem::layout& layout, const loader::elf_image& image) {
    const std::uint64_t top = layout.stack_top().value;
    // Strings and AT_RANDOM's bytes at the very top, then the vectors below them.
    std::uint64_t at = top;
    const auto put_bytes = [&](std::span<const std::byte> bytes) {
        at -= bytes.size();
        std::memcpy(memory.writable(mem::gpa{at}, bytes.size()).data(), bytes.data(), bytes.size());
        return at;
    };
    const auto put_string = [&](std::string_view s) {
        std::vector<std::byte> bytes(s.size() + 1);
        std::memcpy(bytes.data(), s.data(), s.size());
        return put_bytes(bytes);
    };
    std::array<std::byte, 16> random{};
    host_random(random);
    const std::uint64_t random_at = put_bytes(random);
    const std::uint64_t platform_at = put_string("x86_64");
    const std::uint64_t name_at = put_string("guest");

    const std::uint64_t base = layout.image().value;
    const std::vector<std::pair<std::uint64_t, std::uint64_t>> auxv{
        {AT_PHDR, image.phdr_offset() != 0 ? base + image.phdr_offset() : 0},
        {AT_PHENT, sizeof(Elf64_Phdr)},
        {AT_PHNUM, image.phdr_count()},
        {AT_PAGESZ, mem::page_size},
        {AT_BASE, 0},
        {AT_FLAGS, 0},
        {AT_ENTRY, base + image.entry_offset()},
        {AT_UID, 0},
        {AT_EUID, 0},
        {AT_GID, 0},
        {AT_EGID, 0},
        {AT_PLATFORM, platform_at},
        {AT_HWCAP, host_hwcap()},
        {AT_CLKTCK, 100},
        {AT_SECURE, 0},
        {AT_RANDOM, random_at},
        {AT_HWCAP2, 0},
        {AT_EXECFN, name_at},
        {AT_NULL, 0},
    };
    // argc, argv[0], NULL, envp NULL, then the auxv pairs.
    std::vector<std::uint64_t> words{1, name_at, 0, 0};
    for (const auto& [type, value] : auxv) {
        words.push_back(type);
        words.push_back(value);
    }
    const std::uint64_t bytes = words.size() * sizeof(std::uint64_t);
    const std::uint64_t argc_at = align_down(at - bytes, 16);
    const std::uint64_t call_top = align_down(argc_at - 256, 16);
    if (call_top < layout.stack().value + min_call_stack) {
        throw error(errc::invalid_config, util::strfmt("stack_size %llu is too small for a Linux program's initial "
                                                       "stack and its calls",
                                                       static_cast<unsigned long long>(layout.stack_size())));
    }
    std::memcpy(memory.writable(mem::gpa{argc_at}, bytes).data(), words.data(), bytes);
    return {mem::gpa{argc_at}, mem::gpa{call_top}};
}

linux_memory_view kernel_view(mem::guest_memory& memory, const sandbox_image& image) {
    const auto& layout = image.layout;
    return linux_memory_view{
        memory,
        [&image](std::uint64_t addr, std::uint64_t len, bool write) {
            if (len == 0) return true;
            if (addr + len < addr) return false;
            const std::uint64_t last = addr + len - 1;
            for (std::uint64_t page = align_down(addr, mem::page_size);; page += mem::page_size) {
                const auto* region = image.region_at(mem::gpa{page});
                if (region == nullptr || !mem::has(region->access, mem::perms::user) ||
                    !mem::has(region->access, write ? mem::perms::write : mem::perms::read))
                    return false;
                // Skip to the region's end: every page of it has the same permissions.
                const std::uint64_t region_last = region->end().value - 1;
                if (region_last >= last) return true;
                page = align_down(region_last, mem::page_size);
            }
        },
        layout.heap(),
        layout.heap_size(),
        layout.kernel_state(),
        layout.kernel_state_size(),
        [&image](std::uint64_t page) {
            const auto* region = image.region_at(mem::gpa{page});
            return region != nullptr && mem::has(region->access, mem::perms::execute);
        },
    };
}

}  // namespace hl::detail
