// SPDX-License-Identifier: Apache-2.0
#include "kvm_baseline.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <system_error>

#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "vmm/kvm_api.hpp"
#include "vmm/vm.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::bench::baseline {
namespace {

using namespace hl::vmm;

constexpr std::uint64_t mem_size = 64 * 1024;
constexpr std::uint64_t gdt = 0x1000, tss = 0x2000, tables = 0x3000, code = 0x8000, stack_top = 0x10000;
constexpr std::uint16_t port = 0x100;

// 1: mov dx, 0x100 ; out dx, eax ; jmp 1b
constexpr unsigned char exit_code[] = {0x66, 0xba, 0x00, 0x01, 0xef, 0xeb, 0xf9};
// 1: pause ; jmp 1b
constexpr unsigned char spin_code[] = {0xf3, 0x90, 0xeb, 0xfc};

// The same CPU setup as a sandbox: long mode, CPL3, GDT/TSS supervisor-only, one code and one stack page.
class tiny_vm {
public:
    explicit tiny_vm(std::span<const unsigned char> guest_code) : memory_(mem::guest_memory::create(mem_size)) {
        memory_.write_bytes(mem::gpa{code}, std::as_bytes(guest_code));
        cpu_setup setup = x86_64::write_descriptor_tables(memory_, mem::gpa{gdt}, mem::gpa{tss}, port, port + 3);
        // The CPU reads the GDT and TSS (its I/O bitmap) through their linear addresses: map them,
        // supervisor-only, as a sandbox does.
        const mem::region regions[] = {
            {"GDT", mem::gpa{gdt}, mem::page_size, mem::perms::read | mem::perms::write},
            {"TSS", mem::gpa{tss}, mem::page_size, mem::perms::read | mem::perms::write},
            {"code", mem::gpa{code}, mem::page_size, mem::perms::user | mem::perms::read | mem::perms::execute},
            {"stack", mem::gpa{stack_top - mem::page_size}, mem::page_size,
             mem::perms::user | mem::perms::read | mem::perms::write},
        };
        setup.cr3 = x86_64::write_page_tables(memory_, mem::gpa{tables}, 4, regions);
        vm_.emplace(vm::create(memory_, setup));
        cpu_state r;
        r.rip = code;
        r.rsp = stack_top;
        r.rflags = 2;
        vm_->set_registers(r);
    }

protected:
    mem::guest_memory memory_;
    std::optional<vm> vm_;
};

class exit_loop_impl final : public exit_loop, tiny_vm {
public:
    exit_loop_impl() : tiny_vm(exit_code) {}

    void roundtrip() override {
        const vm_exit e = vm_->run();
        if (e.what != vm_exit::kind::io_out || e.port != port) throw std::runtime_error("baseline guest did not exit on its port");
    }
};

constexpr int kick_signal_offset = 9;

class spin_loop_impl final : public spin_loop, tiny_vm {
public:
    spin_loop_impl() : tiny_vm(spin_code) {
        static const bool installed = [] {
            struct sigaction action {};
            action.sa_handler = [](int) {};
            sigemptyset(&action.sa_mask);
            return ::sigaction(SIGRTMIN + kick_signal_offset, &action, nullptr) == 0;
        }();
        if (!installed) throw std::system_error(errno, std::system_category(), "sigaction for the kick baseline");
    }

    void run() override {
        __atomic_store_n(vm_->immediate_exit(), 0, __ATOMIC_SEQ_CST);
        for (;;) {
            const vm_exit e = vm_->run();
            if (e.what == vm_exit::kind::interrupted) return;
            throw std::runtime_error("baseline spin guest exited");
        }
    }

    void kick(unsigned long thread) override {
        __atomic_store_n(vm_->immediate_exit(), 1, __ATOMIC_SEQ_CST);
        ::pthread_kill(static_cast<pthread_t>(thread), SIGRTMIN + kick_signal_offset);
    }
};

void check(int r, const char* what) {
    if (r < 0) throw std::system_error(errno, std::system_category(), what);
}

}  // namespace

std::unique_ptr<exit_loop> exit_loop::create() { return std::make_unique<exit_loop_impl>(); }

std::unique_ptr<spin_loop> spin_loop::create() { return std::make_unique<spin_loop_impl>(); }

void create_and_destroy_vm_vcpu() {
    static const int kvm = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    check(kvm, "open /dev/kvm");
    static const int run_size = ::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    static void* const memory = ::mmap(nullptr, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    const int vm_fd = ::ioctl(kvm, KVM_CREATE_VM, 0);
    check(vm_fd, "KVM_CREATE_VM");
    kvm_userspace_memory_region slot{};
    slot.memory_size = mem_size;
    slot.userspace_addr = reinterpret_cast<std::uint64_t>(memory);
    check(::ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &slot), "KVM_SET_USER_MEMORY_REGION");
    const int vcpu = ::ioctl(vm_fd, KVM_CREATE_VCPU, 0);
    check(vcpu, "KVM_CREATE_VCPU");
    void* run = ::mmap(nullptr, static_cast<std::size_t>(run_size), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap kvm_run");
    ::munmap(run, static_cast<std::size_t>(run_size));
    ::close(vcpu);
    ::close(vm_fd);
}

}  // namespace hl::bench::baseline
