/* SPDX-License-Identifier: Apache-2.0 */
/* Build with -fno-builtin -fno-tree-loop-distribute-patterns, like the rest of the libc subset. */
/*
 * C99 printf conversions (no %n, no positional arguments), matching glibc's output; the floating point
 * ones are in printf_float.c.
 */
#ifdef HL_GUEST_BUILD
#define _GNU_SOURCE
#include <stdio.h>
#endif
#include <limits.h>

#include "printf_impl.h"

void hl_printf_put_repeated(struct sink* o, char c, size_t n) {
    for (size_t i = o->len; i < o->len + n && i + 1 < o->size; i++) o->buf[i] = c;
    o->len += n;
}

void hl_printf_put_chars(struct sink* o, const char* s, size_t n) {
    for (size_t i = 0; i < n && o->len + i + 1 < o->size; i++) o->buf[o->len + i] = s[i];
    o->len += n;
}

void hl_printf_pad_left(struct sink* o, const struct spec* s, const char* prefix, size_t prefix_len, size_t zeros,
                        size_t body_len) {
    size_t total = prefix_len + zeros + body_len;
    if (!(s->flags & F_MINUS) && s->width > total) hl_printf_put_repeated(o, ' ', s->width - total);
    hl_printf_put_chars(o, prefix, prefix_len);
    hl_printf_put_repeated(o, '0', zeros);
}

void hl_printf_pad_right(struct sink* o, const struct spec* s, size_t total) {
    if ((s->flags & F_MINUS) && s->width > total) hl_printf_put_repeated(o, ' ', s->width - total);
}

size_t hl_printf_zero_fill(const struct spec* s, size_t total) {
    return (s->flags & F_ZERO) && !(s->flags & F_MINUS) && s->width > total ? s->width - total : 0;
}

static void format_string(struct sink* o, const struct spec* s, const char* str, size_t len) {
    hl_printf_pad_left(o, s, "", 0, 0, len);
    hl_printf_put_chars(o, str, len);
    hl_printf_pad_right(o, s, len);
}

static void format_integer(struct sink* o, const struct spec* s, uintmax_t value, char sign) {
    char digits[24];
    const char* alphabet = s->conversion == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
    unsigned base = s->conversion == 'o' ? 8 : s->conversion == 'x' || s->conversion == 'X' ? 16 : 10;
    size_t n = 0;
    for (uintmax_t v = value; v; v /= base) digits[sizeof digits - ++n] = alphabet[v % base];
    size_t min_digits = s->precision < 0 ? 1 : (size_t)s->precision;
    size_t zeros = min_digits > n ? min_digits - n : 0;
    if (base == 8 && (s->flags & F_HASH) && !zeros) zeros = 1;
    char prefix[3];
    size_t prefix_len = 0;
    if (sign) prefix[prefix_len++] = sign;
    if (base == 16 && (s->flags & F_HASH) && value) {
        prefix[prefix_len++] = '0';
        prefix[prefix_len++] = s->conversion;
    }
    if (s->precision < 0) zeros += hl_printf_zero_fill(s, prefix_len + zeros + n);
    hl_printf_pad_left(o, s, prefix, prefix_len, zeros, n);
    hl_printf_put_chars(o, digits + sizeof digits - n, n);
    hl_printf_pad_right(o, s, prefix_len + zeros + n);
}

static intmax_t signed_argument(enum length length, va_list* ap) {
    switch (length) {
        case LEN_HH:
            return (signed char)va_arg(*ap, int);
        case LEN_H:
            return (short)va_arg(*ap, int);
        case LEN_L:
            return va_arg(*ap, long);
        case LEN_LL:
        case LEN_LONG_DOUBLE:
            return va_arg(*ap, long long);
        case LEN_J:
            return va_arg(*ap, intmax_t);
        case LEN_Z:
        case LEN_T:
            return va_arg(*ap, ptrdiff_t);
        default:
            return va_arg(*ap, int);
    }
}

static uintmax_t unsigned_argument(enum length length, va_list* ap) {
    switch (length) {
        case LEN_HH:
            return (unsigned char)va_arg(*ap, unsigned);
        case LEN_H:
            return (unsigned short)va_arg(*ap, unsigned);
        case LEN_L:
            return va_arg(*ap, unsigned long);
        case LEN_LL:
        case LEN_LONG_DOUBLE:
            return va_arg(*ap, unsigned long long);
        case LEN_J:
            return va_arg(*ap, uintmax_t);
        case LEN_Z:
        case LEN_T:
            return va_arg(*ap, size_t);
        default:
            return va_arg(*ap, unsigned);
    }
}

/* Wide characters only as ASCII: glibc's "C" locale fails on anything else too. */
static int format_wide_string(struct sink* o, const struct spec* s, const wchar_t* ws) {
    if (!ws) ws = L"(null)";
    size_t len = 0;
    for (; ws[len] && (s->precision < 0 || len < (size_t)s->precision); len++)
        if ((uint32_t)ws[len] > 0x7f) return 0;
    hl_printf_pad_left(o, s, "", 0, 0, len);
    for (size_t i = 0; i < len; i++) hl_printf_put(o, (char)ws[i]);
    hl_printf_pad_right(o, s, len);
    return 1;
}

static int parse_number(const char** f, size_t* out) {
    size_t n = 0;
    for (; **f >= '0' && **f <= '9'; (*f)++) {
        n = n * 10 + (size_t)(**f - '0');
        if (n > INT_MAX) return 0;
    }
    *out = n;
    return 1;
}

static const char* parse_length(const char* f, enum length* length) {
    switch (*f) {
        case 'h':
            *length = f[1] == 'h' ? LEN_HH : LEN_H;
            return f + (f[1] == 'h' ? 2 : 1);
        case 'l':
            *length = f[1] == 'l' ? LEN_LL : LEN_L;
            return f + (f[1] == 'l' ? 2 : 1);
        case 'q':
            *length = LEN_LL;
            return f + 1;
        case 'L':
            *length = LEN_LONG_DOUBLE;
            return f + 1;
        case 'j':
            *length = LEN_J;
            return f + 1;
        case 'z':
        case 'Z':
            *length = LEN_Z;
            return f + 1;
        case 't':
            *length = LEN_T;
            return f + 1;
        default:
            *length = LEN_NONE;
            return f;
    }
}

/* Returns 0 on a format error: a width or precision beyond INT_MAX, or an unprintable wide character. */
static int format_one(struct sink* o, const char** format, va_list* ap) {
    const char *start = *format, *f = start + 1;
    struct spec s = {0, 0, -1, LEN_NONE, 0};
    for (;; f++) {
        if (*f == '-')
            s.flags |= F_MINUS;
        else if (*f == '+')
            s.flags |= F_PLUS;
        else if (*f == ' ')
            s.flags |= F_SPACE;
        else if (*f == '#')
            s.flags |= F_HASH;
        else if (*f == '0')
            s.flags |= F_ZERO;
        else if (*f != '\'' && *f != 'I')
            break;
    }
    if (*f == '*') {
        f++;
        int w = va_arg(*ap, int);
        if (w < 0) {
            if (w == INT_MIN) return 0;
            s.flags |= F_MINUS;
            w = -w;
        }
        s.width = (size_t)w;
    } else if (!parse_number(&f, &s.width)) {
        return 0;
    }
    if (*f == '.') {
        f++;
        size_t precision;
        if (*f == '*') {
            f++;
            int p = va_arg(*ap, int);
            s.precision = p < 0 ? -1 : p;
        } else if (parse_number(&f, &precision)) {
            s.precision = (int)precision;
        } else {
            return 0;
        }
    }
    f = parse_length(f, &s.length);
    s.conversion = *f;
    if (!*f) return 0;
    *format = f + 1;
    switch (s.conversion) {
        case 'd':
        case 'i': {
            intmax_t v = signed_argument(s.length, ap);
            char sign = v < 0 ? '-' : (s.flags & F_PLUS) ? '+' : (s.flags & F_SPACE) ? ' ' : 0;
            format_integer(o, &s, v < 0 ? 0 - (uintmax_t)v : (uintmax_t)v, sign);
            break;
        }
        case 'u':
        case 'o':
        case 'x':
        case 'X':
            format_integer(o, &s, unsigned_argument(s.length, ap), 0);
            break;
        case 'p': {
            void* p = va_arg(*ap, void*);
            if (!p) {
                format_string(o, &s, "(nil)", 5);
                break;
            }
            s.flags |= F_HASH;
            s.conversion = 'x';
            format_integer(o, &s, (uintptr_t)p, (s.flags & F_PLUS) ? '+' : (s.flags & F_SPACE) ? ' ' : 0);
            break;
        }
        case 'c': {
            unsigned c = va_arg(*ap, unsigned);
            if (s.length == LEN_L && c > 0x7f) return 0;
            format_string(o, &s, (const char*)&(char){(char)c}, 1);
            break;
        }
        case 's': {
            if (s.length == LEN_L) return format_wide_string(o, &s, va_arg(*ap, const wchar_t*));
            const char* str = va_arg(*ap, const char*);
            if (!str) str = s.precision < 0 || s.precision >= 6 ? "(null)" : "";
            format_string(o, &s, str, s.precision < 0 ? hl_strlen(str) : hl_strnlen(str, (size_t)s.precision));
            break;
        }
        case 'f':
        case 'F':
        case 'e':
        case 'E':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
            hl_printf_float(o, &s, ap);
            break;
        case 'n':
            (void)va_arg(*ap, void*);
            break;
        case '%':
            hl_printf_put(o, '%');
            break;
        default:
            hl_printf_put_chars(o, start, (size_t)(*format - start));
            break;
    }
    return 1;
}

int hl_vsnprintf(char* restrict buf, size_t size, const char* restrict format, va_list ap) {
    struct sink o = {buf, size, 0};
    va_list args;
    va_copy(args, ap);
    int ok = 1;
    for (const char* f = format; *f && ok;) {
        const char* literal = f;
        while (*f && *f != '%') f++;
        hl_printf_put_chars(&o, literal, (size_t)(f - literal));
        if (*f) ok = format_one(&o, &f, &args);
    }
    va_end(args);
    if (size) buf[o.len < size ? o.len : size - 1] = '\0';
    return ok && o.len <= INT_MAX ? (int)o.len : -1;
}

int hl_snprintf(char* restrict buf, size_t size, const char* restrict format, ...) {
    va_list ap;
    va_start(ap, format);
    int n = hl_vsnprintf(buf, size, format, ap);
    va_end(ap);
    return n;
}

int hl_vsprintf(char* restrict buf, const char* restrict format, va_list ap) {
    return hl_vsnprintf(buf, SIZE_MAX, format, ap);
}

int hl_sprintf(char* restrict buf, const char* restrict format, ...) {
    va_list ap;
    va_start(ap, format);
    int n = hl_vsnprintf(buf, SIZE_MAX, format, ap);
    va_end(ap);
    return n;
}

#ifdef HL_GUEST_BUILD
HL_ALIAS(vsnprintf);
HL_ALIAS(snprintf);
HL_ALIAS(vsprintf);
HL_ALIAS(sprintf);
#endif
