/* SPDX-License-Identifier: Apache-2.0 */
/* Build with -fno-builtin -fno-tree-loop-distribute-patterns, like the rest of the libc subset. */
#ifdef HL_GUEST_BUILD
#define _GNU_SOURCE
#include <stdlib.h>
#endif
#include <errno.h>
#include <limits.h>

#include "hl_libc.h"

typedef uint64_t __attribute__((may_alias, aligned(1))) word_t;

static int digit_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'z') return c - 'a' + 10;
    return 36;
}

struct parsed {
    unsigned long long magnitude;
    int negative;
    int overflow;
};

/* Parses [spaces][sign][0x]digits. The magnitude saturates at the limit for its sign, with ERANGE. */
static struct parsed parse(const char* s, char** end, int base, unsigned long long positive_limit,
                           unsigned long long negative_limit) {
    struct parsed r = {0, 0, 0};
    const unsigned char* p = (const unsigned char*)s;
    if (base < 0 || base == 1 || base > 36) {
        errno = EINVAL;
        return r;
    }
    while (hl_isspace(*p)) p++;
    if (*p == '-' || *p == '+') r.negative = *p++ == '-';
    if ((base == 0 || base == 16) && p[0] == '0' && (p[1] | 0x20) == 'x' && digit_value(p[2]) < 16) {
        p += 2;
        base = 16;
    } else if (base == 0) {
        base = *p == '0' ? 8 : 10;
    }
    unsigned long long limit = r.negative ? negative_limit : positive_limit;
    const unsigned char* digits = p;
    for (int d; (d = digit_value(*p)) < base; p++) {
        if (r.magnitude > (limit - (unsigned)d) / (unsigned)base)
            r.overflow = 1;
        else
            r.magnitude = r.magnitude * (unsigned)base + (unsigned)d;
    }
    if (end) *end = (char*)(p == digits ? (const unsigned char*)s : p);
    if (r.overflow) {
        errno = ERANGE;
        r.magnitude = limit;
    }
    return r;
}

long long hl_strtoll(const char* restrict s, char** restrict end, int base) {
    struct parsed r = parse(s, end, base, LLONG_MAX, (unsigned long long)LLONG_MAX + 1);
    return r.negative ? (long long)(0 - r.magnitude) : (long long)r.magnitude;
}

unsigned long long hl_strtoull(const char* restrict s, char** restrict end, int base) {
    struct parsed r = parse(s, end, base, ULLONG_MAX, ULLONG_MAX);
    return r.negative && !r.overflow ? 0 - r.magnitude : r.magnitude;
}

long hl_strtol(const char* restrict s, char** restrict end, int base) {
    struct parsed r = parse(s, end, base, LONG_MAX, (unsigned long)LONG_MAX + 1);
    return r.negative ? (long)(0 - r.magnitude) : (long)r.magnitude;
}

unsigned long hl_strtoul(const char* restrict s, char** restrict end, int base) {
    struct parsed r = parse(s, end, base, ULONG_MAX, ULONG_MAX);
    return (unsigned long)(r.negative && !r.overflow ? 0 - r.magnitude : r.magnitude);
}

int hl_atoi(const char* s) { return (int)hl_strtol(s, NULL, 10); }
long hl_atol(const char* s) { return hl_strtol(s, NULL, 10); }
long long hl_atoll(const char* s) { return hl_strtoll(s, NULL, 10); }

/* Through unsigned, so that abs(INT_MIN) is INT_MIN as with glibc instead of undefined behaviour. */
int hl_abs(int x) { return x < 0 ? (int)(0u - (unsigned)x) : x; }
long hl_labs(long x) { return x < 0 ? (long)(0ul - (unsigned long)x) : x; }
long long hl_llabs(long long x) { return x < 0 ? (long long)(0ull - (unsigned long long)x) : x; }

static void swap(unsigned char* a, unsigned char* b, size_t size) {
    for (; size >= 8; size -= 8, a += 8, b += 8) {
        uint64_t t = *(word_t*)a;
        *(word_t*)a = *(word_t*)b;
        *(word_t*)b = t;
    }
    for (; size; size--, a++, b++) {
        unsigned char t = *a;
        *a = *b;
        *b = t;
    }
}

static void sift_down(unsigned char* base, size_t root, size_t count, size_t size, hl_compare_fn compare) {
    for (size_t child; (child = 2 * root + 1) < count; root = child) {
        if (child + 1 < count && compare(base + child * size, base + (child + 1) * size) < 0) child++;
        if (compare(base + root * size, base + child * size) >= 0) return;
        swap(base + root * size, base + child * size, size);
    }
}

/* Heapsort: O(n log n) in the worst case, constant stack, no allocation. */
void hl_qsort(void* base, size_t count, size_t size, hl_compare_fn compare) {
    unsigned char* b = base;
    if (count < 2 || !size) return;
    for (size_t i = count / 2; i-- > 0;) sift_down(b, i, count, size, compare);
    for (size_t last = count - 1; last > 0; last--) {
        swap(b, b + last * size, size);
        sift_down(b, 0, last, size, compare);
    }
}

void* hl_bsearch(const void* key, const void* base, size_t count, size_t size, hl_compare_fn compare) {
    const unsigned char* lo = base;
    while (count) {
        const unsigned char* mid = lo + (count / 2) * size;
        int order = compare(key, mid);
        if (!order) return (void*)mid;
        if (order > 0) {
            lo = mid + size;
            count -= count / 2 + 1;
        } else {
            count /= 2;
        }
    }
    return NULL;
}

#ifdef HL_GUEST_BUILD
/* No TLS in the guest, and only one thread: errno is a plain global. */
static int guest_errno;

int* __errno_location(void) { return &guest_errno; }

HL_ALIAS(strtol);
HL_ALIAS(strtoul);
HL_ALIAS(strtoll);
HL_ALIAS(strtoull);
HL_ALIAS(atoi);
HL_ALIAS(atol);
HL_ALIAS(atoll);
HL_ALIAS(abs);
HL_ALIAS(labs);
HL_ALIAS(llabs);
HL_ALIAS(qsort);
HL_ALIAS(bsearch);
#endif
