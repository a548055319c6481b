# SPDX-License-Identifier: Apache-2.0
# The guest SDK's compiler and linker flags: one list for the SDK itself, hl_add_guest and the
# hyperlight-guest pkg-config file. Guests are freestanding static-PIE binaries: no OS, no stack
# protector (there is no TLS canary), no unwind tables, no exceptions, no RTTI, and no _FORTIFY_SOURCE
# (some distributions' compilers define it; no libc here has its __*_chk functions).
set(HL_GUEST_COMMON_FLAGS
  -O2 -ffreestanding -fno-stack-protector -fpie -fno-plt -fstack-clash-protection -fcf-protection=none
  -fno-asynchronous-unwind-tables -fno-common -U_FORTIFY_SOURCE)
set(HL_GUEST_CXX_FLAGS -fno-exceptions -fno-rtti -fno-threadsafe-statics)
# The entry point comes from the SDK (-u pulls it out of the archive); libgcc supplies compiler
# helpers (128-bit division and such) and is linked after the SDK.
set(HL_GUEST_LINK_FLAGS
  -nostdlib -static-pie -Wl,-u,hl_entry -Wl,-e,hl_entry -Wl,-z,noexecstack -Wl,-z,separate-code -Wl,--gc-sections)
# glibc's headers give optimized builds extern-inline (gnu_inline) bodies of some stdio and ctype
# functions; clang refuses, in C++, the SDK's own definitions after them (vprintf, putchar), and in a
# guest those bodies would call into glibc's internals anyway. The SDK defines every one of them.
set(HL_GUEST_CLANG_CXX_FLAGS -D__NO_INLINE__)
# The compile options for a target, by language and compiler.
set(HL_GUEST_SDK_OPTIONS ${HL_GUEST_COMMON_FLAGS} "$<$<COMPILE_LANGUAGE:CXX>:${HL_GUEST_CXX_FLAGS}>"
  "$<$<COMPILE_LANG_AND_ID:CXX,Clang>:${HL_GUEST_CLANG_CXX_FLAGS}>")

# The Linux flavours (LIBC glibc / musl): ordinary hosted code, position independent, linked
# -static-pie against the libc; the ELF entry is still the SDK's hl_entry, which starts the libc.
set(HL_GUEST_LINUX_OPTIONS -O2 -fpie -fno-plt -fcf-protection=none)
set(HL_GUEST_LINUX_LINK_FLAGS -static-pie -Wl,-u,hl_entry -Wl,-e,hl_entry -Wl,-z,noexecstack -Wl,--gc-sections)

# The musl flavour (C guests) needs Debian's musl-dev. Debian's musl-gcc wrapper links a dynamic
# program even under -static-pie (its specs name Scrt1.o and libc.so), so the SDK names musl's parts
# itself: its headers in place of the toolchain's C headers, rcrt1.o (the start of a static PIE,
# which relocates the program) and libc.a. The SDK's own objects are built as for the freestanding
# flavour and call into musl only through the C standard's functions (guests/sdk/CMakeLists.txt).
find_path(HL_MUSL_INCLUDE_DIR NAMES stdio.h PATHS /usr/include/x86_64-linux-musl /usr/lib/musl/include
  NO_DEFAULT_PATH DOC "musl's C headers (Debian: musl-dev)")
find_path(HL_MUSL_LIB_DIR NAMES rcrt1.o PATHS /usr/lib/x86_64-linux-musl /usr/lib/musl/lib
  NO_DEFAULT_PATH DOC "musl's rcrt1.o and libc.a (Debian: musl-dev)")
if(HL_MUSL_INCLUDE_DIR AND HL_MUSL_LIB_DIR AND EXISTS "${HL_MUSL_LIB_DIR}/libc.a")
  set(HL_MUSL_FOUND TRUE)
else()
  set(HL_MUSL_FOUND FALSE)
endif()
# -nostdinc drops the compiler's own directory too; it comes back after musl's (stdatomic.h, the
# intrinsics), as musl-gcc's specs have it. hl_add_guest() adds it for the guest's compiler.
# SHELL: keeps each -isystem with its directory (CMake folds repeated options into one).
set(HL_GUEST_MUSL_OPTIONS ${HL_GUEST_LINUX_OPTIONS} -nostdinc "SHELL:-isystem ${HL_MUSL_INCLUDE_DIR}")
set(HL_GUEST_MUSL_LINK_FLAGS -nostdlib "${HL_MUSL_LIB_DIR}/rcrt1.o" ${HL_GUEST_LINUX_LINK_FLAGS})
