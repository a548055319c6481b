// SPDX-License-Identifier: Apache-2.0
#include "hl/sandbox.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "sandbox/sandbox_core.hpp"
#include "util/strfmt.hpp"

namespace hl {
namespace {

constexpr std::uint64_t max_guest_file_size = 1ull << 30;

std::vector<std::byte> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) {
        throw error(errc::invalid_guest,
                    util::strfmt("cannot open guest binary %s: %s", path.c_str(), std::strerror(errno)));
    }
    const std::streamoff size = in.tellg();
    if (size < 0 || static_cast<std::uint64_t>(size) > max_guest_file_size) {
        throw error(errc::invalid_guest, util::strfmt("guest binary %s is not a regular file of at most %llu bytes",
                                                      path.c_str(), static_cast<unsigned long long>(max_guest_file_size)));
    }
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) {
        throw error(errc::invalid_guest, util::strfmt("cannot read guest binary %s", path.c_str()));
    }
    return bytes;
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

uninitialized_sandbox& uninitialized_sandbox::register_host_function(std::string name, host_function fn) {
    core_->register_host_function(std::move(name), std::move(fn));
    return *this;
}

uninitialized_sandbox& uninitialized_sandbox::set_print_handler(print_handler handler) {
    core_->set_print_handler(std::move(handler));
    return *this;
}

uninitialized_sandbox& uninitialized_sandbox::set_log_handler(log_handler handler) {
    core_->set_log_handler(std::move(handler));
    return *this;
}

uninitialized_sandbox& uninitialized_sandbox::set_log_level(log_level level) {
    core_->set_log_level(level);
    return *this;
}

multi_use_sandbox uninitialized_sandbox::evolve() && {
    auto core = std::move(core_);
    core->initialize();
    return multi_use_sandbox(std::move(core));
}

multi_use_sandbox::multi_use_sandbox(std::unique_ptr<detail::sandbox_core> core) noexcept : core_(std::move(core)) {}

multi_use_sandbox multi_use_sandbox::from_snapshot(std::shared_ptr<const hl::snapshot> snap) {
    return multi_use_sandbox(detail::sandbox_core::create_from(std::move(snap)));
}

std::shared_ptr<const hl::snapshot> multi_use_sandbox::snapshot() { return core_->take_snapshot(); }

void multi_use_sandbox::restore(const std::shared_ptr<const hl::snapshot>& snap) {
    core_->restore(snap);
    last_error_.clear();  // nothing of the last caller survives a restore
}

return_value multi_use_sandbox::call_dynamic_with_restore(const std::shared_ptr<const hl::snapshot>& snap,
                                                          std::string_view name, value_type return_type,
                                                          std::span<const argument> args) {
    return_value result;
    try {
        result = call_dynamic(name, return_type, args);
    } catch (...) {
        core_->restore(snap);
        throw;
    }
    core_->restore(snap);
    return result;
}
multi_use_sandbox::multi_use_sandbox(multi_use_sandbox&&) noexcept = default;
multi_use_sandbox& multi_use_sandbox::operator=(multi_use_sandbox&&) noexcept = default;
multi_use_sandbox::~multi_use_sandbox() = default;

return_value multi_use_sandbox::call_dynamic(std::string_view name, value_type return_type,
                                             std::span<const argument> args, std::chrono::nanoseconds timeout) {
    return core_->call(name, return_type, args, timeout);
}

return_value multi_use_sandbox::call_dynamic(std::error_code& ec, std::string_view name, value_type return_type,
                                             std::span<const argument> args) noexcept {
    ec.clear();
    try {
        return core_->call(name, return_type, args);
    } catch (const std::system_error& e) {
        ec = e.code();
        last_error_ = e.what();
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        last_error_ = "out of host memory";
    } catch (const std::exception& e) {
        ec = make_error_code(errc::vm_error);
        last_error_ = e.what();
    }
    return {};
}

const std::string& multi_use_sandbox::last_error() const noexcept { return last_error_; }

hl::interrupt_handle multi_use_sandbox::interrupt_handle() const { return hl::interrupt_handle(core_->interrupt()); }

bool multi_use_sandbox::poisoned() const noexcept { return core_->poisoned(); }

multi_use_sandbox& multi_use_sandbox::register_host_function(std::string name, host_function fn) {
    core_->register_host_function(std::move(name), std::move(fn));
    return *this;
}

multi_use_sandbox& multi_use_sandbox::set_print_handler(print_handler handler) {
    core_->set_print_handler(std::move(handler));
    return *this;
}

multi_use_sandbox& multi_use_sandbox::set_log_handler(log_handler handler) {
    core_->set_log_handler(std::move(handler));
    return *this;
}

multi_use_sandbox& multi_use_sandbox::set_log_level(log_level level) {
    core_->set_log_level(level);
    return *this;
}

}  // namespace hl
