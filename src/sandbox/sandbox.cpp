// SPDX-License-Identifier: Apache-2.0
#include "hl/sandbox.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>

#include "sandbox/sandbox_core.hpp"
#include "util/strfmt.hpp"
#include "util/system_error.hpp"

namespace hl {
namespace {

constexpr std::uint64_t max_guest_file_size = 1ull << 30;

std::vector<std::byte> read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) {
        const int e = errno;
        // Out of descriptors or memory is the host's state, not a bad guest: say which limit.
        if (e == EMFILE || e == ENFILE || e == ENOMEM) {
            throw util::system_error(e, util::strfmt("cannot open guest binary %s", path.c_str()));
        }
        throw error(errc::invalid_guest, util::strfmt("cannot open guest binary %s: %s", path.c_str(), std::strerror(e)));
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

// The core of a sandbox that still has one.
detail::sandbox_core& live(const std::unique_ptr<detail::sandbox_core>& core, const char* what) {
    if (!core) {
        throw error(errc::usage_error, util::strfmt("cannot %s: this sandbox was moved from (or evolved) and holds no "
                                                    "guest; use the sandbox it was moved to",
                                                    what));
    }
    return *core;
}

// Another thread drives the sandbox; its last_error() is that thread's to write.
class concurrent_use : public error {
public:
    using error::error;
};

// Holds the sandbox for this thread during one operation (see driving_thread). Registrations and
// handler changes may come from inside the sandbox's own callbacks, on the thread that holds it.
class driving {
public:
    enum class from_callback { refused, allowed };

    driving(const std::unique_ptr<detail::sandbox_core>& core, const char* what,
            from_callback callbacks = from_callback::refused)
        : core_(live(core, what)) {
        switch (core_.driver().try_take()) {
        case detail::driving_thread::claim::taken:
            if (const auto* open = core_.open_call()) {
                const std::string message =
                    util::strfmt("cannot %s: its call to '%s' started with start_call() has not finished; run it to "
                                 "its end or destroy its hl::guest_call first",
                                 what, open->name.c_str());
                core_.driver().release();
                throw error(errc::usage_error, message);
            }
            owns_ = true;
            return;
        case detail::driving_thread::claim::held_by_this_thread:
            if (callbacks == from_callback::allowed) return;
            throw error(errc::usage_error,
                        util::strfmt("cannot %s from inside one of its host functions or handlers: they must not "
                                     "drive their own sandbox",
                                     what));
        case detail::driving_thread::claim::held_by_another_thread:
            throw concurrent_use(errc::usage_error,
                                 util::strfmt("cannot %s: another thread is using this sandbox; a sandbox is used by "
                                              "one thread at a time (give each thread its own, or use a sandbox_pool)",
                                              what));
        }
    }
    ~driving() {
        if (!owns_) return;
        // A sandbox destroyed inside its own callback left its core to this, the outermost operation.
        const auto abandoned = core_.take_abandoned();
        core_.driver().release();
    }
    driving(const driving&) = delete;
    driving& operator=(const driving&) = delete;

    detail::sandbox_core* operator->() const noexcept { return &core_; }
    /// The sandbox object was destroyed (or assigned over) during the operation: it must not be
    /// touched any more.
    bool abandoned() const noexcept { return core_.abandoned(); }

private:
    detail::sandbox_core& core_;
    bool owns_ = false;
};

// Frees a sandbox's core, unless this thread is inside one of its callbacks (the running operation
// frees it once it has unwound) or a guest_call still refers to it (the last one frees it).
void drop(std::unique_ptr<detail::sandbox_core>& core) noexcept { detail::sandbox_core::let_go(std::move(core)); }

// Rejects what would crash the host only when the guest calls it.
host_function checked(const std::string& name, host_function fn) {
    if (!fn.invoke) {
        throw error(errc::usage_error, util::strfmt("register_host_function('%s') was given an empty function (a null "
                                                    "function pointer or an empty std::function)",
                                                    util::name_for_message(name).c_str()));
    }
    return fn;
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
    driving d(core_, "register a host function", driving::from_callback::allowed);
    fn = checked(name, std::move(fn));
    d->services().register_function(std::move(name), std::move(fn));
    return *this;
}

uninitialized_sandbox& uninitialized_sandbox::set_print_handler(print_handler handler) {
    driving d(core_, "set a print handler", driving::from_callback::allowed);
    d->services().set_print_handler(std::move(handler));
    return *this;
}

uninitialized_sandbox& uninitialized_sandbox::set_log_handler(log_handler handler) {
    driving d(core_, "set a log handler", driving::from_callback::allowed);
    d->services().set_log_handler(std::move(handler));
    return *this;
}

uninitialized_sandbox& uninitialized_sandbox::set_log_level(log_level level) {
    driving(core_, "set the log level", driving::from_callback::allowed)->set_log_level(level);
    return *this;
}

multi_use_sandbox uninitialized_sandbox::evolve() && {
    live(core_, "evolve it");
    auto core = std::move(core_);
    core->initialize();
    return multi_use_sandbox(std::move(core));
}

multi_use_sandbox::multi_use_sandbox(std::unique_ptr<detail::sandbox_core> core) noexcept : core_(std::move(core)) {}

multi_use_sandbox multi_use_sandbox::from_snapshot(std::shared_ptr<const hl::snapshot> snap) {
    return multi_use_sandbox(detail::sandbox_core::create_from(std::move(snap)));
}

guest_call multi_use_sandbox::start_call(std::string_view name, value_type return_type,
                                         std::span<const argument> args, const hl::call_limits& limits) {
    const driving d(core_, "start a call");
    auto state = std::make_unique<detail::call_state>();
    d->start(*state, name, return_type, args, limits, detail::call_state::mode::sliced);
    d->attach_call();
    return guest_call(std::move(state));
}

std::shared_ptr<const hl::snapshot> multi_use_sandbox::snapshot() {
    return driving(core_, "snapshot it")->take_snapshot();
}

void multi_use_sandbox::restore(const std::shared_ptr<const hl::snapshot>& snap) {
    driving(core_, "restore it")->restore(snap);
    last_error_.clear();  // nothing of the last caller survives a restore
}

return_value multi_use_sandbox::call_dynamic_with_restore(const std::shared_ptr<const hl::snapshot>& snap,
                                                          std::string_view name, value_type return_type,
                                                          std::span<const argument> args) {
    const driving d(core_, "call its guest");
    return_value result;
    try {
        result = d->call(name, return_type, args);
    } catch (...) {
        if (d.abandoned()) throw;  // *this is gone, and so is any reason to restore
        d->restore(snap);
        last_error_.clear();
        throw;
    }
    d->restore(snap);
    last_error_.clear();
    return result;
}

multi_use_sandbox::multi_use_sandbox(multi_use_sandbox&&) noexcept = default;

multi_use_sandbox& multi_use_sandbox::operator=(multi_use_sandbox&& other) noexcept {
    if (this != &other) {
        drop(core_);
        core_ = std::move(other.core_);
        last_error_ = std::move(other.last_error_);
    }
    return *this;
}

// The core goes first: its destructor waits for a call on another thread, which may still write
// last_error_.
multi_use_sandbox::~multi_use_sandbox() { drop(core_); }

return_value multi_use_sandbox::call_dynamic(std::string_view name, value_type return_type,
                                             std::span<const argument> args, const hl::call_limits& limits) {
    return driving(core_, "call its guest")->call(name, return_type, args, limits);
}

hl::call_limits multi_use_sandbox::default_call_limits() const {
    return driving(core_, "read its default call limits", driving::from_callback::allowed)->default_limits();
}

void multi_use_sandbox::set_default_call_limits(const hl::call_limits& limits) {
    if (limits.timeout.count() < 0 || limits.cpu_time.count() < 0) {
        throw error(errc::usage_error, "default call limits hold a negative duration; 0 means no limit");
    }
    driving(core_, "set its default call limits")->set_default_limits(limits);
}

call_usage multi_use_sandbox::usage() const {
    return driving(core_, "read its usage", driving::from_callback::allowed)->usage();
}

return_value multi_use_sandbox::call_dynamic(std::error_code& ec, std::string_view name, value_type return_type,
                                             std::span<const argument> args) noexcept {
    ec.clear();
    try {
        const driving d(core_, "call its guest");
        // Inside the claim: last_error_ is written before another thread may take the sandbox over.
        try {
            std::string reason;
            return_value result = d->call(name, return_type, args, {}, ec, reason);
            if (ec) last_error_ = error(ec, reason).what();  // a kill: as thrown, but with no exception
            return result;
        } catch (...) {
            if (d.abandoned()) {  // *this is gone: report through ec alone
                ec = make_error_code(errc::usage_error);
                return {};
            }
            try {
                throw;
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
        }
    } catch (const concurrent_use& e) {
        ec = e.code();
    } catch (const error& e) {
        ec = e.code();
        last_error_ = e.what();
    } catch (const std::bad_alloc&) {  // formatting a message, or copying it into last_error_
        ec = std::make_error_code(std::errc::not_enough_memory);
    }
    return {};
}

void multi_use_sandbox::null_argument(std::error_code& ec) noexcept {
    ec = make_error_code(errc::usage_error);
    try {
        last_error_ = detail::null_string_message;
    } catch (const std::bad_alloc&) {
        last_error_.clear();
    }
}

const std::string& multi_use_sandbox::last_error() const noexcept { return last_error_; }

hl::interrupt_handle multi_use_sandbox::interrupt_handle() const {
    return hl::interrupt_handle(live(core_, "get its interrupt handle").interrupt());
}

bool multi_use_sandbox::poisoned() const noexcept { return !core_ || core_->poisoned(); }

multi_use_sandbox& multi_use_sandbox::register_host_function(std::string name, host_function fn) {
    driving d(core_, "register a host function", driving::from_callback::allowed);
    fn = checked(name, std::move(fn));
    d->services().register_function(std::move(name), std::move(fn));
    return *this;
}

multi_use_sandbox& multi_use_sandbox::set_print_handler(print_handler handler) {
    driving d(core_, "set a print handler", driving::from_callback::allowed);
    d->services().set_print_handler(std::move(handler));
    return *this;
}

multi_use_sandbox& multi_use_sandbox::set_log_handler(log_handler handler) {
    driving d(core_, "set a log handler", driving::from_callback::allowed);
    d->services().set_log_handler(std::move(handler));
    return *this;
}

multi_use_sandbox& multi_use_sandbox::set_log_level(log_level level) {
    driving(core_, "set the log level", driving::from_callback::allowed)->set_log_level(level);
    return *this;
}

}  // namespace hl
