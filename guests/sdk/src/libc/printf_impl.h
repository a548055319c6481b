/* SPDX-License-Identifier: Apache-2.0 */
/* What printf.c shares with printf_float.c: a parsed conversion and the output it goes to. */
#ifndef HL_PRINTF_IMPL_H
#define HL_PRINTF_IMPL_H

#include "hl_libc.h"

enum { F_MINUS = 1, F_PLUS = 2, F_SPACE = 4, F_HASH = 8, F_ZERO = 16 };
enum length { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_J, LEN_Z, LEN_T, LEN_LONG_DOUBLE };

struct spec {
    unsigned flags;
    size_t width;
    int precision; /* -1 when not given */
    enum length length;
    char conversion;
};

struct sink {
    char* buf;
    size_t size;
    size_t len;
};

/* Counts every character but stores only what fits, leaving room for the terminating NUL. */
void hl_printf_put_repeated(struct sink* o, char c, size_t n);
void hl_printf_put_chars(struct sink* o, const char* s, size_t n);
/* Writes [spaces][prefix][zeros] before a body of body_len characters; pad_right writes the spaces after. */
void hl_printf_pad_left(struct sink* o, const struct spec* s, const char* prefix, size_t prefix_len, size_t zeros,
                        size_t body_len);
void hl_printf_pad_right(struct sink* o, const struct spec* s, size_t total);
/* Extra zeros that the 0 flag asks for to fill the width. */
size_t hl_printf_zero_fill(const struct spec* s, size_t total);
/* Converts the next double, or long double with L, for one of the conversions a A e E f F g G. */
void hl_printf_float(struct sink* o, const struct spec* s, va_list* ap);

static inline void hl_printf_put(struct sink* o, char c) { hl_printf_put_chars(o, &c, 1); }

#endif /* HL_PRINTF_IMPL_H */
