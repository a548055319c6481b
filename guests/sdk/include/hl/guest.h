/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The C API of the hyperlight-cpp guest SDK. A guest defines hl_guest_init(), which registers its
 * functions; the host then calls them by name. Everything runs on one vCPU at CPL3 with no operating
 * system: there are no threads, no syscalls and no files, only the SDK's libc subset.
 */
#ifndef HL_GUEST_H
#define HL_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hl/abi/hl_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parameter and return types; the order matches the wire protocol's ValueType. */
typedef enum hl_type {
    HL_TYPE_VOID,
    HL_TYPE_INT32,
    HL_TYPE_UINT32,
    HL_TYPE_INT64,
    HL_TYPE_UINT64,
    HL_TYPE_FLOAT,
    HL_TYPE_DOUBLE,
    HL_TYPE_BOOL,
    HL_TYPE_STRING,
    HL_TYPE_BYTES,
} hl_type;

#define HL_MAX_PARAMETERS 32

/* One argument. Strings and byte arrays point into the host's message: valid until the function
 * returns, read-only. Strings are also NUL-terminated. */
typedef struct hl_value {
    hl_type type;
    union {
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
        float f32;
        double f64;
        bool b;
        struct {
            const char *data;
            size_t len;
        } str;
        struct {
            const uint8_t *data;
            size_t len;
        } bytes;
    } as;
} hl_value;

/* Where a guest function puts its result: exactly one hl_return_* call (none for void functions). */
typedef struct hl_result hl_result;

typedef void (*hl_guest_function)(const hl_value *args, size_t nargs, hl_result *result);

/* Defined by every guest: registers its functions. Runs once, when the host evolves the sandbox. */
void hl_guest_init(void);

/* Registers `fn` under `name` (copied). The SDK checks every call's argument count and types against
 * `params` before calling `fn`. Returns 0, or -1 when the name is taken or nparams is too large. */
int hl_register_function(const char *name, hl_type return_type, const hl_type *params, size_t nparams,
                         hl_guest_function fn);

void hl_return_int32(hl_result *result, int32_t value);
void hl_return_uint32(hl_result *result, uint32_t value);
void hl_return_int64(hl_result *result, int64_t value);
void hl_return_uint64(hl_result *result, uint64_t value);
void hl_return_float(hl_result *result, float value);
void hl_return_double(hl_result *result, double value);
void hl_return_bool(hl_result *result, bool value);
/* Copies `len` bytes of `data`. */
void hl_return_string(hl_result *result, const char *data, size_t len);
void hl_return_bytes(hl_result *result, const uint8_t *data, size_t len);
/* Fails the call: the host sees errc::guest_error with this code and message; the sandbox stays usable. */
void hl_return_error(hl_result *result, int32_t code, const char *message);

/* Ends the guest: the host sees errc::guest_aborted with this code and message and poisons the sandbox. */
__attribute__((noreturn)) void hl_abort(uint32_t code, const char *message);

/* The boot information the host provided. */
const hl_peb *hl_get_peb(void);

#ifdef __cplusplus
}
#endif

#endif /* HL_GUEST_H */
