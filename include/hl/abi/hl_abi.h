/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest/host ABI of hyperlight-cpp: C99 with <stdint.h> only, compiled by the host library and by
 * the guest SDK. Everything else that crosses the boundary is a FlatBuffer described in hl.fbs.
 *
 * A guest is entered at its ELF entry point, `void entry(const hl_peb *peb, uint64_t op)`, at CPL3 with
 * a fresh stack. It never returns: it leaves through `out` on one of the ports below, and the host
 * either resumes it (after a host call) or re-enters it for the next operation.
 */
#ifndef HL_ABI_H
#define HL_ABI_H

#include <stdint.h>

#define HL_ABI_VERSION 1u

/* I/O ports. The TSS I/O permission bitmap allows exactly these; every other port faults. The value
 * written (32 bits, `outl`) is described with each port. */
#define HL_PORT_DONE 0x100u      /* operation finished; value: HL_STATUS_* */
#define HL_PORT_HOST_CALL 0x104u /* FunctionCall in the output buffer; the host answers in the output buffer */
#define HL_PORT_ABORT 0x108u     /* unrecoverable guest failure; value: abort code, message in output */
#define HL_PORT_OUTPUT 0x10cu    /* value HL_OUTPUT_*: text or a LogRecord in the output buffer */
/* The bitmap allows [HL_PORT_FIRST, HL_PORT_LAST]; ports are 4 apart so that a 32-bit `outl` to any of
 * them stays inside the allowed range (the CPU checks one bit per byte written). */
#define HL_PORT_FIRST 0x100u
#define HL_PORT_LAST 0x10fu

/* Operation requested in the entry point's second argument. */
#define HL_OP_INIT 0u     /* run constructors, hl_guest_init(); then `out HL_PORT_DONE` */
#define HL_OP_DISPATCH 1u /* FunctionCall in the input buffer; FunctionCallResult into the output buffer */

/* Value written to HL_PORT_OUTPUT: what the output buffer holds. */
#define HL_OUTPUT_PRINT 0u /* text (bytes, not NUL-terminated) for the host's print handler */
#define HL_OUTPUT_LOG 1u   /* a LogRecord FlatBuffer for the host's log handler */

/* Value written to HL_PORT_DONE. */
#define HL_STATUS_OK 0u
#define HL_STATUS_INIT_FAILED 1u

/* The ELF note (in a PT_NOTE) that marks a guest as a Linux program: owner HL_NOTE_NAME, type
 * HL_NOTE_GUEST_KIND, a 4-byte description holding HL_GUEST_KIND_LINUX. A guest without it is
 * freestanding. */
#define HL_NOTE_NAME "Hyperlight"
#define HL_NOTE_GUEST_KIND 1u
#define HL_GUEST_KIND_LINUX 2u

/* Every input and output buffer starts with this header: the size in bytes of the message that
 * follows it (a FlatBuffer, 8-byte aligned). A size larger than the buffer's capacity is a protocol
 * error. */
typedef struct hl_buffer_header {
    uint64_t size;
} hl_buffer_header;

#define HL_BUFFER_HEADER_SIZE 8u

/* The boot information page, written by the host and read-only to the guest. Addresses are guest
 * virtual addresses, identical to guest physical addresses (the memory is identity mapped). */
typedef struct hl_peb {
    uint32_t abi_version;
    uint32_t log_level;     /* least severe LogLevel delivered; less severe records never leave the guest */
    uint64_t input_addr;    /* host -> guest messages: header + FlatBuffer */
    uint64_t input_size;
    uint64_t output_addr; /* guest -> host messages: header + FlatBuffer */
    uint64_t output_size;
    uint64_t heap_addr;
    uint64_t heap_size;
    uint64_t stack_top; /* initial stack pointer + 8: 16-byte aligned */
    uint64_t stack_size;
    uint64_t image_addr; /* where the guest ELF was loaded */
    uint64_t image_size;
} hl_peb;

/* Abort codes the SDK itself uses (user aborts use any other value). */
#define HL_ABORT_UNREACHABLE 0xdead0000u
#define HL_ABORT_OUT_OF_MEMORY 0xdead0001u
#define HL_ABORT_PURE_VIRTUAL 0xdead0002u
#define HL_ABORT_STACK_PROTECTOR 0xdead0003u
#define HL_ABORT_ASSERTION 0xdead0004u
#define HL_ABORT_CXX_RUNTIME 0xdead0005u
#define HL_ABORT_PROTOCOL 0xdead0006u

#ifdef __cplusplus
static_assert(sizeof(hl_buffer_header) == HL_BUFFER_HEADER_SIZE, "buffer header size is ABI");
static_assert(sizeof(hl_peb) == 88, "hl_peb layout is ABI");
static_assert(__builtin_offsetof(hl_peb, input_addr) == 8, "hl_peb layout is ABI");
static_assert(__builtin_offsetof(hl_peb, image_size) == 80, "hl_peb layout is ABI");
#else
_Static_assert(sizeof(hl_buffer_header) == HL_BUFFER_HEADER_SIZE, "buffer header size is ABI");
_Static_assert(sizeof(hl_peb) == 88, "hl_peb layout is ABI");
_Static_assert(__builtin_offsetof(hl_peb, input_addr) == 8, "hl_peb layout is ABI");
_Static_assert(__builtin_offsetof(hl_peb, image_size) == 80, "hl_peb layout is ABI");
#endif

#endif /* HL_ABI_H */
