/* SPDX-License-Identifier: Apache-2.0 */
/* Build with -fno-builtin -fno-tree-loop-distribute-patterns: gcc would turn these loops into calls to themselves. */
#ifdef HL_GUEST_BUILD
#define _GNU_SOURCE
#include <string.h>
#endif

#include "hl_libc.h"

typedef uint64_t __attribute__((may_alias, aligned(1))) word_t;

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
#define HAS_ZERO(w) (((w)-ONES) & ~(w)&HIGHS)
/* Above this size the microcoded string instructions beat a word loop. */
#define REP_THRESHOLD 256
/* Word scans read the whole aligned word holding the terminator: never across a page, but past the object. */
#define WHOLE_WORD_READS __attribute__((no_sanitize_address))

/* Also correct for overlapping buffers when dst < src, which memmove relies on. */
static void copy_forward(unsigned char* d, const unsigned char* s, size_t n) {
    if (n >= REP_THRESHOLD) {
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        return;
    }
    for (; n >= 8; n -= 8, d += 8, s += 8) *(word_t*)d = *(const word_t*)s;
    while (n--) *d++ = *s++;
}

void* hl_memcpy(void* restrict dst, const void* restrict src, size_t n) {
    copy_forward(dst, src, n);
    return dst;
}

void* hl_memmove(void* dst, const void* src, size_t n) {
    unsigned char* d = dst;
    const unsigned char* s = src;
    if ((uintptr_t)d - (uintptr_t)s >= n) {
        copy_forward(d, s, n);
        return dst;
    }
    d += n;
    s += n;
    for (; n >= 8; n -= 8) {
        d -= 8;
        s -= 8;
        *(word_t*)d = *(const word_t*)s;
    }
    while (n--) *--d = *--s;
    return dst;
}

void* hl_memset(void* dst, int c, size_t n) {
    unsigned char* d = dst;
    if (n >= REP_THRESHOLD) {
        __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
        return dst;
    }
    uint64_t w = (unsigned char)c * ONES;
    for (; n >= 8; n -= 8, d += 8) *(word_t*)d = w;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

int hl_memcmp(const void* a, const void* b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (; n >= 8; n -= 8, x += 8, y += 8) {
        uint64_t wx = *(const word_t*)x, wy = *(const word_t*)y;
        if (wx != wy) return __builtin_bswap64(wx) < __builtin_bswap64(wy) ? -1 : 1;
    }
    for (; n; n--, x++, y++)
        if (*x != *y) return *x - *y;
    return 0;
}

/* C lets callers pass an n beyond the match (strnlen does), so only aligned words are read past it. */
WHOLE_WORD_READS void* hl_memchr(const void* s, int c, size_t n) {
    const unsigned char* p = s;
    unsigned char ch = (unsigned char)c;
    for (; n && ((uintptr_t)p & 7); n--, p++)
        if (*p == ch) return (void*)p;
    uint64_t pattern = ch * ONES;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w = *(const word_t*)p ^ pattern;
        if (HAS_ZERO(w)) break;
    }
    for (; n; n--, p++)
        if (*p == ch) return (void*)p;
    return NULL;
}

WHOLE_WORD_READS size_t hl_strlen(const char* s) {
    const char* p = s;
    for (; (uintptr_t)p & 7; p++)
        if (!*p) return (size_t)(p - s);
    uint64_t zero;
    for (;; p += 8) {
        zero = HAS_ZERO(*(const word_t*)p);
        if (zero) break;
    }
    return (size_t)(p - s) + (size_t)(__builtin_ctzll(zero) / 8);
}

size_t hl_strnlen(const char* s, size_t max) {
    const char* end = hl_memchr(s, 0, max);
    return end ? (size_t)(end - s) : max;
}

int hl_strcmp(const char* a, const char* b) {
    const unsigned char *x = (const unsigned char*)a, *y = (const unsigned char*)b;
    while (*x && *x == *y) x++, y++;
    return *x - *y;
}

int hl_strncmp(const char* a, const char* b, size_t n) {
    const unsigned char *x = (const unsigned char*)a, *y = (const unsigned char*)b;
    for (; n; n--, x++, y++)
        if (*x != *y || !*x) return *x - *y;
    return 0;
}

char* hl_strcpy(char* restrict dst, const char* restrict src) {
    copy_forward((unsigned char*)dst, (const unsigned char*)src, hl_strlen(src) + 1);
    return dst;
}

char* hl_strncpy(char* restrict dst, const char* restrict src, size_t n) {
    size_t len = hl_strnlen(src, n);
    copy_forward((unsigned char*)dst, (const unsigned char*)src, len);
    hl_memset(dst + len, 0, n - len);
    return dst;
}

char* hl_strcat(char* restrict dst, const char* restrict src) {
    hl_strcpy(dst + hl_strlen(dst), src);
    return dst;
}

char* hl_strncat(char* restrict dst, const char* restrict src, size_t n) {
    char* end = dst + hl_strlen(dst);
    size_t len = hl_strnlen(src, n);
    copy_forward((unsigned char*)end, (const unsigned char*)src, len);
    end[len] = '\0';
    return dst;
}

WHOLE_WORD_READS char* hl_strchr(const char* s, int c) {
    char ch = (char)c;
    for (; (uintptr_t)s & 7; s++) {
        if (*s == ch) return (char*)s;
        if (!*s) return NULL;
    }
    uint64_t pattern = (unsigned char)ch * ONES;
    for (;; s += 8) {
        uint64_t w = *(const word_t*)s;
        if (HAS_ZERO(w) | HAS_ZERO(w ^ pattern)) break;
    }
    for (;; s++) {
        if (*s == ch) return (char*)s;
        if (!*s) return NULL;
    }
}

char* hl_strrchr(const char* s, int c) {
    char ch = (char)c;
    const char* last = NULL;
    for (;; s++) {
        if (*s == ch) last = s;
        if (!*s) return (char*)last;
    }
}

/* Quadratic in the worst case; guests search short strings. */
char* hl_strstr(const char* haystack, const char* needle) {
    size_t len = hl_strlen(needle);
    if (!len) return (char*)haystack;
    for (const char* p = haystack; (p = hl_strchr(p, needle[0])) != NULL; p++)
        if (!hl_strncmp(p, needle, len)) return (char*)p;
    return NULL;
}

char* hl_strdup(const char* s) {
    size_t size = hl_strlen(s) + 1;
    char* copy = hl_malloc(size);
    if (copy) copy_forward((unsigned char*)copy, (const unsigned char*)s, size);
    return copy;
}

#ifdef HL_GUEST_BUILD
HL_ALIAS(memcpy);
HL_ALIAS(memmove);
HL_ALIAS(memset);
HL_ALIAS(memcmp);
HL_ALIAS(memchr);
HL_ALIAS(strlen);
HL_ALIAS(strnlen);
HL_ALIAS(strcmp);
HL_ALIAS(strncmp);
HL_ALIAS(strcpy);
HL_ALIAS(strncpy);
HL_ALIAS(strcat);
HL_ALIAS(strncat);
HL_ALIAS(strchr);
HL_ALIAS(strrchr);
HL_ALIAS(strstr);
HL_ALIAS(strdup);
#endif
