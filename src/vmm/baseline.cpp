// SPDX-License-Identifier: Apache-2.0
#include "vmm/baseline.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <system_error>

#include "mem/guest_memory.hpp"
#include "mem/layout.hpp"
#include "vmm/kvm_api.hpp"
#include "vmm/vm.hpp"
#include "vmm/x86_64_tables.hpp"

namespace hl::vmm::baseline {
namespace {

constexpr std::uint64_t mem_size = 64 * 1024;
constexpr std::uint64_t gdt = 0x1000, tss = 0x2000, tables = 0x3000, code = 0x8000, stack_top = 0x10000;
constexpr std::uint16_t port = 0x100;

// 1: mov dx, 0x100 ; out dx, eax ; jmp 1b
constexpr unsigned char guest_code[] = {0x66, 0xba, 0x00, 0x01, 0xef, 0xeb, 0xf9};

class exit_loop_impl final : public exit_loop {
public:
    exit_loop_impl() : memory_(mem::guest_memory::create(mem_size)) {
        std::memcpy(memory_.span(mem::gpa{code}, sizeof guest_code).data(), guest_code, sizeof guest_code);
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
        registers r;
        r.rip = code;
        r.rsp = stack_top;
        r.rflags = 2;
        vm_->set_registers(r);
    }

    void roundtrip() override {
        const vm_exit e = vm_->run();
        if (e.what != vm_exit::kind::io_out || e.port != port) throw std::runtime_error("baseline guest did not exit on its port");
    }

private:
    mem::guest_memory memory_;
    std::optional<vm> vm_;
};

void check(int r, const char* what) {
    if (r < 0) throw std::system_error(errno, std::system_category(), what);
}

}  // namespace

std::unique_ptr<exit_loop> exit_loop::create() { return std::make_unique<exit_loop_impl>(); }

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

}  // namespace hl::vmm::baseline
