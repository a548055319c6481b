// SPDX-License-Identifier: Apache-2.0
#include "hl/sandbox.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "sandbox/sandbox_core.hpp"
#include "util/strfmt.hpp"

namespace hl {
namespace {

std::vector<std::byte> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw error(errc::invalid_guest,
                    util::strfmt("cannot open guest binary %s: %s", path.c_str(), std::strerror(errno)));
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw error(errc::invalid_guest, util::strfmt("cannot read guest binary %s", path.c_str()));
    std::vector<std::byte> out(bytes.size());
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}

}  // namespace

uninitialized_sandbox::uninitialized_sandbox(std::unique_ptr<detail::sandbox_core> core) noexcept
    : core_(std::move(core)) {}
uninitialized_sandbox::uninitialized_sandbox(uninitialized_sandbox&&) noexcept = default;
uninitialized_sandbox& uninitialized_sandbox::operator=(uninitialized_sandbox&&) noexcept = default;
uninitialized_sandbox::~uninitialized_sandbox() = default;

uninitialized_sandbox uninitialized_sandbox::from_file(const std::filesystem::path& path, const sandbox_config& config) {
    return uninitialized_sandbox(detail::sandbox_core::create(read_file(path), config));
}

uninitialized_sandbox uninitialized_sandbox::from_bytes(std::span<const std::byte> elf, const sandbox_config& config) {
    return uninitialized_sandbox(detail::sandbox_core::create({elf.begin(), elf.end()}, config));
}

multi_use_sandbox uninitialized_sandbox::evolve() && {
    auto core = std::move(core_);
    core->initialize();
    return multi_use_sandbox(std::move(core));
}

multi_use_sandbox::multi_use_sandbox(std::unique_ptr<detail::sandbox_core> core) noexcept : core_(std::move(core)) {}
multi_use_sandbox::multi_use_sandbox(multi_use_sandbox&&) noexcept = default;
multi_use_sandbox& multi_use_sandbox::operator=(multi_use_sandbox&&) noexcept = default;
multi_use_sandbox::~multi_use_sandbox() = default;

return_value multi_use_sandbox::call_dynamic(std::string_view name, value_type return_type,
                                             std::span<const argument> args) {
    return core_->call(name, return_type, args);
}

bool multi_use_sandbox::poisoned() const noexcept { return core_->poisoned(); }

}  // namespace hl
