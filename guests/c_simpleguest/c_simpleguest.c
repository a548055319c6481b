/* SPDX-License-Identifier: Apache-2.0 */
/* The C test guest: the same functions as simpleguest, written against the C API. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hl/guest.h"

static void echo(const hl_value *args, size_t n, hl_result *r) {
    (void)n;
    hl_return_string(r, args[0].as.str.data, args[0].as.str.len);
}
static void echo_int32(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_int32(r, a[0].as.i32); }
static void echo_uint32(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_uint32(r, a[0].as.u32); }
static void echo_int64(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_int64(r, a[0].as.i64); }
static void echo_uint64(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_uint64(r, a[0].as.u64); }
static void echo_float(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_float(r, a[0].as.f32); }
static void echo_double(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_double(r, a[0].as.f64); }
static void echo_bool(const hl_value *a, size_t n, hl_result *r) { (void)n; hl_return_bool(r, a[0].as.b); }
static void echo_bytes(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_return_bytes(r, a[0].as.bytes.data, a[0].as.bytes.len);
}
/* Adds through the host function HostAdd, as Hyperlight's simpleguest does. */
static void add(const hl_value *a, size_t n, hl_result *r) {
    hl_value sum;
    hl_error err;
    int32_t value;
    if (hl_call_host("HostAdd", HL_TYPE_INT32, a, n, &sum, &err) != 0) {
        hl_return_call_error(r, &err);
        return;
    }
    if (!hl_value_get_int32(&sum, &value)) {
        hl_return_error(r, 1, "HostAdd returned something other than an int32");
        return;
    }
    hl_return_int32(r, value);
}

static void add_local(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_return_int32(r, (int32_t)((uint32_t)a[0].as.i32 + (uint32_t)a[1].as.i32));
}

static void print_output(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_return_int32(r, printf("%.*s", (int)a[0].as.str.len, a[0].as.str.data));
}

static void log_message(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    (void)r;
    HL_LOG((hl_log_level)a[0].as.i32, "%.*s", (int)a[1].as.str.len, a[1].as.str.data);
}

static void call_host_many_times(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    int64_t total = 0;
    for (int32_t i = 0; i < a[0].as.i32; i++) {
        hl_value args[2] = {{.type = HL_TYPE_INT32, .as.i32 = i}, {.type = HL_TYPE_INT32, .as.i32 = 1}};
        hl_value sum;
        hl_error err;
        if (hl_call_host("HostAdd", HL_TYPE_INT32, args, 2, &sum, &err) != 0) {
            hl_return_call_error(r, &err);
            return;
        }
        total += sum.as.i32;
    }
    hl_return_int64(r, total);
}

/* Calls the host function named by the first argument with (a, b) -> int32; passes errors on. */
static void call_host(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_value sum;
    hl_error err;
    if (hl_call_host(a[0].as.str.data, HL_TYPE_INT32, a + 1, 2, &sum, &err) != 0) {
        hl_return_call_error(r, &err);
        return;
    }
    hl_return_int32(r, sum.as.i32);
}

/* Calls the named host function with (1, 2) and handles its error: returns the message. */
static void handle_host_error(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_value args[2] = {{.type = HL_TYPE_INT32, .as.i32 = 1}, {.type = HL_TYPE_INT32, .as.i32 = 2}};
    hl_value sum;
    hl_error err;
    char message[1100];
    if (hl_call_host(a[0].as.str.data, HL_TYPE_INT32, args, 2, &sum, &err) == 0) {
        hl_return_string(r, "no error", 8);
        return;
    }
    int len = snprintf(message, sizeof message, "handled: %s", err.message);
    hl_return_string(r, message, (size_t)len < sizeof message ? (size_t)len : sizeof message - 1);
}

static void abort_with(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    (void)r;
    hl_abort((uint32_t)a[0].as.i32, a[1].as.str.data);
}

static void return_guest_error(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_return_error(r, a[0].as.i32, a[1].as.str.data);
}

static void log_lots(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    (void)r;
    char *text = malloc((size_t)a[1].as.i32 + 1);
    if (text == NULL) hl_abort(HL_ABORT_OUT_OF_MEMORY, "log_lots: out of memory");
    memset(text, 'L', (size_t)a[1].as.i32);
    text[a[1].as.i32] = 0;
    for (int32_t i = 0; i < a[0].as.i32; i++) HL_INFO("%s", text);
    free(text);
}

static void print_lots(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    (void)r;
    char *text = malloc((size_t)a[1].as.i32 + 1);
    if (text == NULL) hl_abort(HL_ABORT_OUT_OF_MEMORY, "print_lots: out of memory");
    memset(text, 'P', (size_t)a[1].as.i32);
    text[a[1].as.i32] = 0;
    for (int32_t i = 0; i < a[0].as.i32; i++) puts(text);
    free(text);
}

static void in24k_out8k(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    enum { out_size = 8 * 1024 };
    uint8_t *out = malloc(out_size);
    if (out == NULL) hl_abort(HL_ABORT_OUT_OF_MEMORY, "24K_in_8K_out: out of memory");
    for (size_t i = 0; i < out_size; i++) out[i] = a[0].as.bytes.len ? a[0].as.bytes.data[i % a[0].as.bytes.len] : 0;
    hl_return_bytes(r, out, out_size);
    free(out);
}

static void large_parameters(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    (void)r;
    volatile size_t sink = a[0].as.bytes.len + a[1].as.str.len;
    (void)sink;
}

static int32_t counter;
static void increment_counter(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    hl_return_int32(r, ++counter);
}

static void spin(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    (void)r;
    for (;;) __asm__ volatile("pause");
}

static void read_null(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    hl_return_int32(r, *(volatile int32_t *)0);
}

static void write_null(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    (void)r;
    *(volatile int32_t *)0 = 1;
}

static void invalid_opcode(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    (void)r;
    __asm__ volatile("ud2");
}

static void divide_by_zero(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    int32_t result;
    __asm__ volatile("cltd\n\tidivl %2" : "=a"(result) : "a"(a[0].as.i32), "r"(a[1].as.i32) : "rdx", "cc");
    hl_return_int32(r, result);
}

static int32_t recurse(int32_t depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    if (depth < 0) return 0; /* never true; keeps the recursion from being provably infinite */
    return recurse(depth + 1) + frame[0];
}
static void stack_overflow(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    hl_return_int32(r, recurse(0));
}

static void write_to_code(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    (void)r;
    *(volatile uint8_t *)(uintptr_t)&spin = 0xc3;
}

#define REGISTER(name, fn, ret, ...)                                                   \
    do {                                                                               \
        static const hl_type params[] = {__VA_ARGS__};                                 \
        hl_register_function(name, ret, params, sizeof params / sizeof params[0] - 1, fn); \
    } while (0)

void hl_guest_init(void) {
    REGISTER("Echo", echo, HL_TYPE_STRING, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("EchoString", echo, HL_TYPE_STRING, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("EchoInt32", echo_int32, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("EchoUInt32", echo_uint32, HL_TYPE_UINT32, HL_TYPE_UINT32, HL_TYPE_VOID);
    REGISTER("EchoInt64", echo_int64, HL_TYPE_INT64, HL_TYPE_INT64, HL_TYPE_VOID);
    REGISTER("EchoUInt64", echo_uint64, HL_TYPE_UINT64, HL_TYPE_UINT64, HL_TYPE_VOID);
    REGISTER("EchoFloat", echo_float, HL_TYPE_FLOAT, HL_TYPE_FLOAT, HL_TYPE_VOID);
    REGISTER("EchoDouble", echo_double, HL_TYPE_DOUBLE, HL_TYPE_DOUBLE, HL_TYPE_VOID);
    REGISTER("EchoBool", echo_bool, HL_TYPE_BOOL, HL_TYPE_BOOL, HL_TYPE_VOID);
    REGISTER("EchoBytes", echo_bytes, HL_TYPE_BYTES, HL_TYPE_BYTES, HL_TYPE_VOID);
    REGISTER("Add", add, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("AddLocal", add_local, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("PrintOutput", print_output, HL_TYPE_INT32, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("LogMessage", log_message, HL_TYPE_VOID, HL_TYPE_INT32, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("CallHostManyTimes", call_host_many_times, HL_TYPE_INT64, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("CallHost", call_host, HL_TYPE_INT32, HL_TYPE_STRING, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("HandleHostError", handle_host_error, HL_TYPE_STRING, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("Abort", abort_with, HL_TYPE_VOID, HL_TYPE_INT32, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("ReturnGuestError", return_guest_error, HL_TYPE_VOID, HL_TYPE_INT32, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("LogLots", log_lots, HL_TYPE_VOID, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("PrintLots", print_lots, HL_TYPE_VOID, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("24K_in_8K_out", in24k_out8k, HL_TYPE_BYTES, HL_TYPE_BYTES, HL_TYPE_VOID);
    REGISTER("LargeParameters", large_parameters, HL_TYPE_VOID, HL_TYPE_BYTES, HL_TYPE_STRING, HL_TYPE_VOID);
    REGISTER("IncrementCounter", increment_counter, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("Spin", spin, HL_TYPE_VOID, HL_TYPE_VOID);
    REGISTER("ReadNull", read_null, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("WriteNull", write_null, HL_TYPE_VOID, HL_TYPE_VOID);
    REGISTER("InvalidOpcode", invalid_opcode, HL_TYPE_VOID, HL_TYPE_VOID);
    REGISTER("DivideByZero", divide_by_zero, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("StackOverflow", stack_overflow, HL_TYPE_INT32, HL_TYPE_VOID);
    REGISTER("WriteToCode", write_to_code, HL_TYPE_VOID, HL_TYPE_VOID);
}
