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

/* Why a call failed: the wire protocol's ErrorKind. */
typedef enum hl_error_kind {
    HL_ERROR_USER,                /* a guest function's own error (hl_return_error) */
    HL_ERROR_FUNCTION_NOT_FOUND,  /* no function with that name */
    HL_ERROR_PARAMETER_MISMATCH,  /* wrong argument count or types */
    HL_ERROR_RETURN_TYPE_MISMATCH,
    HL_ERROR_MALFORMED_CALL,
    HL_ERROR_OUT_OF_MEMORY,
    HL_ERROR_RESULT_TOO_LARGE,    /* the result does not fit the output buffer */
    HL_ERROR_HOST_FUNCTION,       /* the host function threw; the message is its exception's */
    HL_ERROR_ARGUMENT_TOO_LARGE,  /* the call does not fit the output buffer */
} hl_error_kind;

typedef struct hl_error {
    hl_error_kind kind;
    int32_t code;
    const char *message; /* NUL-terminated; valid until the next hl_call_host() */
} hl_error;

/* Calls the host function `name`. On success returns 0 and stores the result in *result (whose
 * type is `return_type`; strings and bytes point into the output buffer and stay valid until the
 * next call into the host: hl_call_host, printing, logging). On failure returns -1 and fills *error.
 * One exit per call. */
int hl_call_host(const char *name, hl_type return_type, const hl_value *args, size_t nargs, hl_value *result,
                 hl_error *error);

/* Typed getters: store the value and return true when `value` holds that type. */
bool hl_value_get_int32(const hl_value *value, int32_t *out);
bool hl_value_get_uint32(const hl_value *value, uint32_t *out);
bool hl_value_get_int64(const hl_value *value, int64_t *out);
bool hl_value_get_uint64(const hl_value *value, uint64_t *out);
bool hl_value_get_float(const hl_value *value, float *out);
bool hl_value_get_double(const hl_value *value, double *out);
bool hl_value_get_bool(const hl_value *value, bool *out);
bool hl_value_get_string(const hl_value *value, const char **data, size_t *len);
bool hl_value_get_bytes(const hl_value *value, const uint8_t **data, size_t *len);

/* Fails the call with an error received from hl_call_host, unchanged: a host function's exception
 * reaches the host caller as errc::host_function_error with its message. */
void hl_return_call_error(hl_result *result, const hl_error *error);

/* Guest logging. Records below the sandbox's log level are dropped here, without leaving the guest. */
typedef enum hl_log_level {
    HL_LOG_TRACE,
    HL_LOG_DEBUG,
    HL_LOG_INFO,
    HL_LOG_WARNING,
    HL_LOG_ERROR,
    HL_LOG_CRITICAL,
} hl_log_level;

bool hl_log_enabled(hl_log_level level);
__attribute__((format(printf, 4, 5))) void hl_log(hl_log_level level, const char *file, uint32_t line,
                                                   const char *format, ...);

#define HL_LOG(level, ...) \
    do { \
        if (hl_log_enabled(level)) hl_log(level, __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
#define HL_TRACE(...) HL_LOG(HL_LOG_TRACE, __VA_ARGS__)
#define HL_DEBUG(...) HL_LOG(HL_LOG_DEBUG, __VA_ARGS__)
#define HL_INFO(...) HL_LOG(HL_LOG_INFO, __VA_ARGS__)
#define HL_WARNING(...) HL_LOG(HL_LOG_WARNING, __VA_ARGS__)
#define HL_ERROR(...) HL_LOG(HL_LOG_ERROR, __VA_ARGS__)
#define HL_CRITICAL(...) HL_LOG(HL_LOG_CRITICAL, __VA_ARGS__)

/* printf, vprintf, puts and putchar (from <stdio.h>) write to the host's print handler: buffered in
 * the guest and sent a line at a time, or when the buffer (the output buffer) is full. */

/* Sends buffered printf output now. The SDK does this itself before every other exit. */
void hl_flush_output(void);

/* Ends the guest: the host sees errc::guest_aborted with this code and message and poisons the sandbox. */
__attribute__((noreturn)) void hl_abort(uint32_t code, const char *message);

/* The boot information the host provided. */
const hl_peb *hl_get_peb(void);

#ifdef __cplusplus
}
#endif

#endif /* HL_GUEST_H */
