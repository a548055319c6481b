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
static void add(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_return_int32(r, (int32_t)((uint32_t)a[0].as.i32 + (uint32_t)a[1].as.i32));
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
