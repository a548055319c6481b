/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest libc subset under hl_ names, so host unit tests can link it next to glibc. With
 * HL_GUEST_BUILD each file also exports the standard names, with glibc's prototypes, as aliases.
 * Single-threaded: there are no locks anywhere.
 */
#ifndef HL_LIBC_H
#define HL_LIBC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*hl_compare_fn)(const void*, const void*);

void* hl_memcpy(void* __restrict dst, const void* __restrict src, size_t n);
void* hl_memmove(void* dst, const void* src, size_t n);
void* hl_memset(void* dst, int c, size_t n);
int hl_memcmp(const void* a, const void* b, size_t n);
void* hl_memchr(const void* s, int c, size_t n);
size_t hl_strlen(const char* s);
size_t hl_strnlen(const char* s, size_t max);
int hl_strcmp(const char* a, const char* b);
int hl_strncmp(const char* a, const char* b, size_t n);
char* hl_strcpy(char* __restrict dst, const char* __restrict src);
char* hl_strncpy(char* __restrict dst, const char* __restrict src, size_t n);
char* hl_strcat(char* __restrict dst, const char* __restrict src);
char* hl_strncat(char* __restrict dst, const char* __restrict src, size_t n);
char* hl_strchr(const char* s, int c);
char* hl_strrchr(const char* s, int c);
char* hl_strstr(const char* haystack, const char* needle);
char* hl_strdup(const char* s);

long hl_strtol(const char* __restrict s, char** __restrict end, int base);
unsigned long hl_strtoul(const char* __restrict s, char** __restrict end, int base);
long long hl_strtoll(const char* __restrict s, char** __restrict end, int base);
unsigned long long hl_strtoull(const char* __restrict s, char** __restrict end, int base);
int hl_atoi(const char* s);
long hl_atol(const char* s);
long long hl_atoll(const char* s);
int hl_abs(int x);
long hl_labs(long x);
long long hl_llabs(long long x);
void hl_qsort(void* base, size_t count, size_t size, hl_compare_fn compare);
void* hl_bsearch(const void* key, const void* base, size_t count, size_t size, hl_compare_fn compare);

int hl_isalnum(int c);
int hl_isalpha(int c);
int hl_isblank(int c);
int hl_iscntrl(int c);
int hl_isdigit(int c);
int hl_isgraph(int c);
int hl_islower(int c);
int hl_isprint(int c);
int hl_ispunct(int c);
int hl_isspace(int c);
int hl_isupper(int c);
int hl_isxdigit(int c);
int hl_tolower(int c);
int hl_toupper(int c);
/* glibc's <ctype.h> macros index these tables with any value in [-128, 255]. */
const unsigned short** hl_ctype_b_loc(void);
const int32_t** hl_ctype_tolower_loc(void);
const int32_t** hl_ctype_toupper_loc(void);

int hl_vsnprintf(char* __restrict buf, size_t size, const char* __restrict format, va_list ap);
int hl_snprintf(char* __restrict buf, size_t size, const char* __restrict format, ...);
int hl_vsprintf(char* __restrict buf, const char* __restrict format, va_list ap);
int hl_sprintf(char* __restrict buf, const char* __restrict format, ...);

/* Hands the allocator its memory; forgets any earlier heap. Before the first call malloc returns NULL. */
void hl_heap_init(void* base, size_t size);
void* hl_malloc(size_t size);
void hl_free(void* p);
void* hl_calloc(size_t count, size_t size);
void* hl_realloc(void* p, size_t size);
void* hl_aligned_alloc(size_t alignment, size_t size);
int hl_posix_memalign(void** out, size_t alignment, size_t size);
void* hl_memalign(size_t alignment, size_t size);
size_t hl_malloc_usable_size(void* p);
/* Bytes in allocated blocks, headers included: 0 once everything is freed. */
size_t hl_heap_used(void);
/* Defined by the SDK. Called when free or realloc finds a freed or overwritten block header; the heap is
 * left as it was, so returning from the hook is safe. */
void hl_heap_corrupted(void);

#ifdef __cplusplus
}
#endif

#ifdef HL_GUEST_BUILD
#define HL_ALIAS(name) extern __typeof__(hl_##name) name __attribute__((alias("hl_" #name)))
#endif

#endif /* HL_LIBC_H */
