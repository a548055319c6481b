/* SPDX-License-Identifier: Apache-2.0 */
/* A C guest that is an ordinary static-PIE program on musl: stdio, math, strtod, qsort, time and
 * malloc are musl's, its system calls are served by the host. Each function returns a value the host
 * test checks. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hl/guest.h"

/* snprintf with floats, widths and a %s, formatted by musl. */
static void format(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    char text[128];
    int len = snprintf(text, sizeof text, "%.3f|%8.2e|%-4d|%s|%x", a[0].as.f64, a[0].as.f64 * 1000, 7, "ok", 255u);
    hl_return_string(r, text, (size_t)len);
}

/* sin, exp, log, pow, fmod, hypot and round of the argument, summed with weights the test repeats. */
static void math(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    double x = a[0].as.f64;
    hl_return_double(r, sin(x) + 2 * exp(x) + 3 * log(x) + 4 * pow(x, 1.5) + 5 * fmod(x, 0.7) + 6 * hypot(x, 4.0) +
                            7 * round(x));
}

/* strtod of the string; -1 if it did not take the whole string, -2 on ERANGE. */
static void parse_double(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    char text[64];
    size_t len = a[0].as.str.len < sizeof text - 1 ? a[0].as.str.len : sizeof text - 1;
    memcpy(text, a[0].as.str.data, len);
    text[len] = '\0';
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno == ERANGE) value = -2;
    else if (*end != '\0') value = -1;
    hl_return_double(r, value);
}

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* qsort of count pseudo-random ints; returns 1 if the result is sorted and keeps the sum. */
static void sort_ints(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    int count = a[0].as.i32;
    int *v = malloc((size_t)count * sizeof *v);
    if (v == NULL) {
        hl_return_error(r, 1, "malloc failed");
        return;
    }
    long long before = 0, after = 0;
    uint32_t seed = 12345;
    for (int i = 0; i < count; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (int)(seed >> 8) - (1 << 22);
        before += v[i];
    }
    qsort(v, (size_t)count, sizeof *v, compare_ints);
    int sorted = 1;
    for (int i = 0; i < count; i++) {
        after += v[i];
        if (i > 0 && v[i - 1] > v[i]) sorted = 0;
    }
    free(v);
    hl_return_int32(r, sorted && before == after);
}

/* time() in seconds since the epoch, from the host's clock. */
static void now(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    hl_return_int64(r, (int64_t)time(NULL));
}

/* Nanoseconds of CLOCK_MONOTONIC between two reads, and that the second is not earlier. */
static void monotonic(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    struct timespec t0, t1;
    if (clock_gettime(CLOCK_MONOTONIC, &t0) != 0 || clock_gettime(CLOCK_MONOTONIC, &t1) != 0) {
        hl_return_int64(r, -1);
        return;
    }
    hl_return_int64(r, (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec));
}

/* 8 bytes from getrandom(). */
static void random_bytes(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    uint64_t value = 0;
    if (getrandom(&value, sizeof value, 0) != (ssize_t)sizeof value) {
        hl_return_error(r, 1, "getrandom failed");
        return;
    }
    hl_return_uint64(r, value);
}

/* malloc of the size, touched at every page; the size, or -1 when malloc says no. */
static void alloc(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    size_t size = (size_t)a[0].as.i64;
    unsigned char *p = malloc(size);
    /* The compiler may drop a malloc whose memory nobody reads, and take it as a success (clang
     * does): the pointer escapes here, so the allocation happens. */
    __asm__ volatile("" : : "r"(p) : "memory");
    if (p == NULL) {
        hl_return_int64(r, -1);
        return;
    }
    for (size_t i = 0; i < size; i += 4096) p[i] = (unsigned char)i;
    __asm__ volatile("" : : "r"(p) : "memory");
    free(p);
    hl_return_int64(r, (int64_t)size);
}

/* printf (buffered per line by the libc, written to the print handler by the host). */
static void print(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    int len = printf("%.*s %.2f\n", (int)a[0].as.str.len, a[0].as.str.data, 0.5);
    fflush(stdout);
    hl_return_int32(r, len);
}

/* Prints without a newline, then abort()s or fails an assert(): the text still reaches the host. */
static void print_then_abort(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    (void)r;
    printf("last words");
    if (a[0].as.b) abort();
    assert(a[0].as.b);
}

/* A raw system call: the number and four arguments, the kernel's return value (-errno, not the libc's
 * -1), for the hostile tests: the host must answer every one. */
static void raw_syscall(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    long result;
    register long r10 __asm__("r10") = (long)a[4].as.i64;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(a[0].as.i64), "D"(a[1].as.i64), "S"(a[2].as.i64), "d"(a[3].as.i64), "r"(r10), "r"(r8),
                       "r"(r9)
                     : "rcx", "r11", "memory");
    hl_return_int64(r, result);
}

/* Never returns, and spends its time in system calls: a deadline or a kill must still end it. */
static void syscall_spin(const hl_value *a, size_t n, hl_result *r) {
    (void)a;
    (void)n;
    (void)r;
    for (;;) syscall(SYS_getpid);
}

void hl_guest_init(void) {
    static const hl_type f64[] = {HL_TYPE_DOUBLE};
    static const hl_type str[] = {HL_TYPE_STRING};
    static const hl_type i32[] = {HL_TYPE_INT32};
    static const hl_type i64[] = {HL_TYPE_INT64};
    static const hl_type boolean[] = {HL_TYPE_BOOL};
    static const hl_type sys[] = {HL_TYPE_INT64, HL_TYPE_INT64, HL_TYPE_INT64, HL_TYPE_INT64, HL_TYPE_INT64};
    hl_register_function("Format", HL_TYPE_STRING, f64, 1, format);
    hl_register_function("Math", HL_TYPE_DOUBLE, f64, 1, math);
    hl_register_function("ParseDouble", HL_TYPE_DOUBLE, str, 1, parse_double);
    hl_register_function("Qsort", HL_TYPE_INT32, i32, 1, sort_ints);
    hl_register_function("Time", HL_TYPE_INT64, NULL, 0, now);
    hl_register_function("Monotonic", HL_TYPE_INT64, NULL, 0, monotonic);
    hl_register_function("Random", HL_TYPE_UINT64, NULL, 0, random_bytes);
    hl_register_function("Alloc", HL_TYPE_INT64, i64, 1, alloc);
    hl_register_function("Print", HL_TYPE_INT32, str, 1, print);
    hl_register_function("RawSyscall", HL_TYPE_INT64, sys, 5, raw_syscall);
    hl_register_function("SyscallSpin", HL_TYPE_INT64, NULL, 0, syscall_spin);
    hl_register_function("PrintThenAbort", HL_TYPE_VOID, boolean, 1, print_then_abort);
}
