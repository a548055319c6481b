/* SPDX-License-Identifier: Apache-2.0 */
/* The consumer's C guest, built on musl (LIBC musl): the same functions as guest.cpp through the C
 * API, formatted by musl's snprintf. */
#include <stdio.h>

#include <hl/guest.h>

#if defined(CONSUMER_HOST_OPTION) || defined(CONSUMER_CXX_FLAGS)
#error "the consuming project's host flags reached the guest"
#endif
#ifdef __GLIBC__ /* musl defines no macro of its own */
#error "the musl guest was compiled against glibc's headers"
#endif

static void add(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    hl_return_int32(r, a[0].as.i32 + a[1].as.i32);
}

static void greet(const hl_value *a, size_t n, hl_result *r) {
    (void)n;
    char text[128];
    int len = snprintf(text, sizeof text, "hello, %.*s", (int)a[0].as.str.len, a[0].as.str.data);
    hl_return_string(r, text, len < (int)sizeof text ? (size_t)len : sizeof text - 1);
}

void hl_guest_init(void) {
    static const hl_type two_ints[] = {HL_TYPE_INT32, HL_TYPE_INT32};
    static const hl_type one_string[] = {HL_TYPE_STRING};
    hl_register_function("Add", HL_TYPE_INT32, two_ints, 2, add);
    hl_register_function("Greet", HL_TYPE_STRING, one_string, 1, greet);
}
