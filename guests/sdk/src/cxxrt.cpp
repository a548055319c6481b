// SPDX-License-Identifier: Apache-2.0
// The pieces of the C and C++ runtime that g++-generated guest code and libstdc++'s headers call into.
// Guests have no exceptions: every failure that would throw aborts the guest with a code and message.
// The musl flavour (HL_GUEST_LINUX) links it too, for the SDK's own C++ (there is no libstdc++ for
// musl); there the libc already has atexit and the stack protector, and keeps them.
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "hl/guest.h"
#include "io.hpp"

extern "C" {

// Weak: a program linked with the toolchain's crtbegin has its own.
__attribute__((weak, visibility("hidden"))) void* __dso_handle = nullptr;

void __cxa_pure_virtual() { hl_abort(HL_ABORT_PURE_VIRTUAL, "pure virtual function called"); }

#ifndef HL_GUEST_LINUX
// Guests never exit, so static destructors never need to run.
int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }

void __stack_chk_fail() { hl_abort(HL_ABORT_STACK_PROTECTOR, "stack smashing detected"); }
#endif

// musl's own assert() and abort() would raise SIGABRT, which the host never delivers; these end the
// call with the message instead. On musl, what the program printed without a newline yet reaches the
// print handler first (once: a failure while flushing must not come back here).
static void flush_before_abort() {
#ifdef HL_GUEST_LINUX
    static bool flushing = false;
    if (!flushing) {
        flushing = true;
        hl::guest::detail::flush_libc_output();
    }
#endif
}

void __assert_fail(const char* expr, const char* file, unsigned line, const char* function) {
    flush_before_abort();
    char message[512];
    std::snprintf(message, sizeof message, "assertion failed: %s (%s:%u, %s)", expr, file, line, function);
    hl_abort(HL_ABORT_ASSERTION, message);
}

void abort() noexcept {
    flush_before_abort();
    hl_abort(HL_ABORT_UNREACHABLE, "abort() called");
}

void hl_heap_corrupted() { hl_abort(HL_ABORT_OUT_OF_MEMORY, "heap corruption detected"); }
}

namespace {

void* allocate(std::size_t size, std::size_t alignment) {
    if (size == 0) size = 1;
    void* p = alignment <= 16 ? std::malloc(size) : std::aligned_alloc(alignment, (size + alignment - 1) & ~(alignment - 1));
    if (p == nullptr) {
        char message[96];
        std::snprintf(message, sizeof message, "out of memory allocating %zu bytes", size);
        hl_abort(HL_ABORT_OUT_OF_MEMORY, message);
    }
    return p;
}

}  // namespace

void* operator new(std::size_t n) { return allocate(n, 16); }
void* operator new[](std::size_t n) { return allocate(n, 16); }
void* operator new(std::size_t n, std::align_val_t a) { return allocate(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return allocate(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return std::malloc(n ? n : 1); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return std::malloc(n ? n : 1); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace std {
[[noreturn]] void __throw_bad_alloc() { hl_abort(HL_ABORT_OUT_OF_MEMORY, "std::bad_alloc"); }
[[noreturn]] void __throw_bad_array_new_length() { hl_abort(HL_ABORT_OUT_OF_MEMORY, "std::bad_array_new_length"); }
[[noreturn]] void __throw_length_error(const char* what) { hl_abort(HL_ABORT_CXX_RUNTIME, what); }
[[noreturn]] void __throw_out_of_range(const char* what) { hl_abort(HL_ABORT_CXX_RUNTIME, what); }
// libstdc++ passes a printf format and its arguments ("__n (which is %zu) >= this->size() ...").
[[noreturn]] void __throw_out_of_range_fmt(const char* format, ...) {
    char message[512];
    va_list args;
    va_start(args, format);
    std::vsnprintf(message, sizeof message, format, args);
    va_end(args);
    hl_abort(HL_ABORT_CXX_RUNTIME, message);
}
[[noreturn]] void __throw_logic_error(const char* what) { hl_abort(HL_ABORT_CXX_RUNTIME, what); }
[[noreturn]] void __throw_invalid_argument(const char* what) { hl_abort(HL_ABORT_CXX_RUNTIME, what); }
[[noreturn]] void __throw_bad_function_call() { hl_abort(HL_ABORT_CXX_RUNTIME, "std::bad_function_call"); }
}  // namespace std
