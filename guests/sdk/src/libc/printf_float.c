/* SPDX-License-Identifier: Apache-2.0 */
/* Build with -fno-builtin -fno-tree-loop-distribute-patterns, like the rest of the libc subset. */
/*
 * Floating point conversions for printf. Decimal output comes from the exact decimal expansion of the
 * binary value, rounded half to even like glibc, so every digit matches glibc's.
 */
#include "printf_impl.h"

/* A finite value as mantissa * 2^exponent. */
struct binary {
    uint64_t mantissa;
    int exponent;
};

/* 2^64 * 5^1140, the largest product to_decimal forms, has 817 decimal digits. */
#define MAX_NEGATIVE_EXPONENT 1140
#define MAX_BITS 1024
#define MAX_DIGITS 820
#define LIMBS (MAX_DIGITS / 9 + 2)
#define BILLION 1000000000u

/* The exact decimal digits of a value: 0.d[0]d[1]... * 10^(exp10 + 1), trailing zeros dropped. */
struct decimal {
    char d[MAX_DIGITS];
    int len;
    int exp10;
};

static int fits_decimal(struct binary v) {
    for (; v.mantissa && v.exponent < 0 && !(v.mantissa & 1); v.exponent++) v.mantissa >>= 1;
    if (v.exponent < 0) return v.exponent >= -MAX_NEGATIVE_EXPONENT;
    return v.mantissa == 0 || 64 - __builtin_clzll(v.mantissa) + v.exponent <= MAX_BITS;
}

static int multiply(uint32_t* limb, int n, uint32_t factor) {
    uint64_t carry = 0;
    for (int i = 0; i < n; i++) {
        uint64_t t = (uint64_t)limb[i] * factor + carry;
        limb[i] = (uint32_t)(t % BILLION);
        carry = t / BILLION;
    }
    for (; carry; carry /= BILLION) limb[n++] = (uint32_t)(carry % BILLION);
    return n;
}

static void trim_zeros(struct decimal* x) {
    while (x->len > 0 && x->d[x->len - 1] == '0') x->len--;
}

/* Value m * 2^e is m * 5^-e / 10^-e when e < 0: both cases are integer arithmetic in base 10^9 limbs. */
static void to_decimal(struct decimal* x, struct binary v) {
    uint32_t limb[LIMBS];
    int n = 0, shift = 0;
    x->len = 0;
    x->exp10 = 0;
    if (!v.mantissa) return;
    for (; v.exponent < 0 && !(v.mantissa & 1); v.exponent++) v.mantissa >>= 1;
    for (uint64_t m = v.mantissa; m; m /= BILLION) limb[n++] = (uint32_t)(m % BILLION);
    for (int e = v.exponent; e > 0; e -= 29) n = multiply(limb, n, 1u << (e < 29 ? e : 29));
    if (v.exponent < 0) {
        shift = -v.exponent;
        for (int e = shift; e > 0; e -= 13) {
            uint32_t factor = 1;
            for (int i = 0; i < (e < 13 ? e : 13); i++) factor *= 5;
            n = multiply(limb, n, factor);
        }
    }
    char top[10];
    int top_len = 0;
    for (uint32_t t = limb[n - 1]; t; t /= 10) top[top_len++] = (char)('0' + t % 10);
    while (top_len) x->d[x->len++] = top[--top_len];
    for (int i = n - 2; i >= 0; i--) {
        for (int j = 8; j >= 0; j--) {
            x->d[x->len + j] = (char)('0' + limb[i] % 10);
            limb[i] /= 10;
        }
        x->len += 9;
    }
    x->exp10 = x->len - 1 - shift;
    trim_zeros(x);
}

/* Keeps the first `keep` significant digits, rounding half to even on the exact value. */
static void round_digits(struct decimal* x, long long keep) {
    if (keep >= x->len) return;
    if (keep < 0) {
        x->len = 0;
        return;
    }
    int n = (int)keep;
    char next = x->d[n];
    int up = next > '5' || (next == '5' && (n + 1 < x->len || (n > 0 && ((x->d[n - 1] - '0') & 1))));
    x->len = n;
    if (up) {
        while (n > 0 && x->d[n - 1] == '9') n--;
        if (n > 0) {
            x->d[n - 1]++;
            x->len = n;
        } else {
            x->d[0] = '1';
            x->len = 1;
            x->exp10++;
        }
    }
    trim_zeros(x);
}

/* The digit for 10^position. */
static char digit_at(const struct decimal* x, long long position) {
    long long i = x->exp10 - position;
    return i >= 0 && i < x->len ? x->d[i] : '0';
}

/* Writes the digits for positions from..to (descending), with zeros beyond the known digits. */
static void put_digits(struct sink* o, const struct decimal* x, long long from, long long to) {
    long long last = x->exp10 - x->len + 1;
    long long pos = from;
    for (; pos >= to && pos >= last; pos--) hl_printf_put(o, digit_at(x, pos));
    if (pos >= to) hl_printf_put_repeated(o, '0', (size_t)(pos - to + 1));
}

static void format_fixed(struct sink* o, const struct spec* s, struct decimal* x, char sign, int precision) {
    round_digits(x, (long long)x->exp10 + 1 + precision);
    size_t int_digits = x->len && x->exp10 >= 0 ? (size_t)x->exp10 + 1 : 1;
    int dot = precision > 0 || (s->flags & F_HASH);
    size_t body = int_digits + (size_t)dot + (size_t)precision;
    size_t prefix_len = sign != 0, zeros = hl_printf_zero_fill(s, prefix_len + body);
    hl_printf_pad_left(o, s, &sign, prefix_len, zeros, body);
    put_digits(o, x, (long long)int_digits - 1, 0);
    if (dot) hl_printf_put(o, '.');
    put_digits(o, x, -1, -(long long)precision);
    hl_printf_pad_right(o, s, prefix_len + zeros + body);
}

static void format_exponential(struct sink* o, const struct spec* s, struct decimal* x, char sign, int precision,
                               char e) {
    round_digits(x, (long long)precision + 1);
    int exp10 = x->len ? x->exp10 : 0;
    unsigned magnitude = exp10 < 0 ? (unsigned)-exp10 : (unsigned)exp10;
    char exponent[8];
    size_t exp_len = 0;
    for (unsigned m = magnitude; m || exp_len < 2; m /= 10)
        exponent[sizeof exponent - ++exp_len] = (char)('0' + m % 10);
    exponent[sizeof exponent - ++exp_len] = exp10 < 0 ? '-' : '+';
    exponent[sizeof exponent - ++exp_len] = e;
    int dot = precision > 0 || (s->flags & F_HASH);
    size_t body = 1 + (size_t)dot + (size_t)precision + exp_len;
    size_t prefix_len = sign != 0, zeros = hl_printf_zero_fill(s, prefix_len + body);
    hl_printf_pad_left(o, s, &sign, prefix_len, zeros, body);
    hl_printf_put(o, digit_at(x, exp10));
    if (dot) hl_printf_put(o, '.');
    put_digits(o, x, (long long)exp10 - 1, (long long)exp10 - precision);
    hl_printf_put_chars(o, exponent + sizeof exponent - exp_len, exp_len);
    hl_printf_pad_right(o, s, prefix_len + zeros + body);
}

static void format_general(struct sink* o, const struct spec* s, struct decimal* x, char sign, int precision) {
    int upper = s->conversion == 'G';
    if (!precision) precision = 1;
    round_digits(x, precision);
    int exp10 = x->len ? x->exp10 : 0;
    int hash = s->flags & F_HASH;
    if (exp10 < precision && exp10 >= -4) {
        int fraction = precision - 1 - exp10;
        int needed = x->len - 1 - exp10;
        if (!hash && needed < fraction) fraction = needed > 0 ? needed : 0;
        format_fixed(o, s, x, sign, fraction);
    } else {
        int fraction = precision - 1;
        if (!hash && x->len - 1 < fraction) fraction = x->len > 1 ? x->len - 1 : 0;
        format_exponential(o, s, x, sign, fraction, upper ? 'E' : 'e');
    }
}

/* Hexadecimal floating point: lead.fraction * 2^exponent, fraction holding `digits` hex digits. */
struct hex_float {
    unsigned lead;
    uint64_t fraction;
    int digits;
    int exponent;
};

static void format_hex(struct sink* o, const struct spec* s, struct hex_float h, char sign) {
    int upper = s->conversion == 'A';
    const char* alphabet = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t extra_zeros = 0;
    if (s->precision < 0) {
        for (; h.digits > 0 && !(h.fraction & 15); h.digits--) h.fraction >>= 4;
    } else if (s->precision < h.digits) {
        int drop = 4 * (h.digits - s->precision);
        uint64_t rest = h.fraction & ((1ull << drop) - 1), half = 1ull << (drop - 1);
        h.fraction >>= drop;
        h.digits = s->precision;
        uint64_t last = h.digits ? h.fraction : h.lead;
        if (rest > half || (rest == half && (last & 1))) {
            h.fraction++;
            if (h.fraction >> (4 * h.digits)) {
                h.fraction = 0;
                h.lead++;
            }
            /* glibc renormalises a long double's 0xf that rounds up: 0x1p+4, not 0x10p+0. */
            if (h.lead > 15) {
                h.lead = 1;
                h.exponent += 4;
            }
        }
    } else {
        extra_zeros = (size_t)(s->precision - h.digits);
    }
    unsigned magnitude = h.exponent < 0 ? (unsigned)-h.exponent : (unsigned)h.exponent;
    char exponent[8];
    size_t exp_len = 0;
    for (unsigned m = magnitude; m || !exp_len; m /= 10) exponent[sizeof exponent - ++exp_len] = (char)('0' + m % 10);
    exponent[sizeof exponent - ++exp_len] = h.exponent < 0 ? '-' : '+';
    exponent[sizeof exponent - ++exp_len] = upper ? 'P' : 'p';
    char prefix[3] = {sign, '0', upper ? 'X' : 'x'};
    size_t prefix_len = sign ? 3 : 2;
    int dot = h.digits > 0 || extra_zeros || (s->flags & F_HASH);
    size_t body = 1 + (size_t)dot + (size_t)h.digits + extra_zeros + exp_len;
    size_t zeros = hl_printf_zero_fill(s, prefix_len + body);
    hl_printf_pad_left(o, s, sign ? prefix : prefix + 1, prefix_len, zeros, body);
    hl_printf_put(o, alphabet[h.lead]);
    if (dot) hl_printf_put(o, '.');
    for (int i = h.digits - 1; i >= 0; i--) hl_printf_put(o, alphabet[(h.fraction >> (4 * i)) & 15]);
    hl_printf_put_repeated(o, '0', extra_zeros);
    hl_printf_put_chars(o, exponent + sizeof exponent - exp_len, exp_len);
    hl_printf_pad_right(o, s, prefix_len + zeros + body);
}

enum fp_class { FP_FINITE, FP_INFINITE, FP_NOT_A_NUMBER };

struct fp {
    int negative;
    enum fp_class kind;
    struct binary value;
    struct hex_float hex;
};

static struct fp decompose_double(double d) {
    union {
        double d;
        uint64_t bits;
    } u = {d};
    struct fp f = {(int)(u.bits >> 63), FP_FINITE, {0, 0}, {0, 0, 13, 0}};
    unsigned biased = (unsigned)(u.bits >> 52) & 0x7ff;
    uint64_t fraction = u.bits & ((1ull << 52) - 1);
    if (biased == 0x7ff) {
        f.kind = fraction ? FP_NOT_A_NUMBER : FP_INFINITE;
    } else if (biased == 0) {
        f.value = (struct binary){fraction, -1074};
        f.hex = (struct hex_float){0, fraction, 13, fraction ? -1022 : 0};
    } else {
        f.value = (struct binary){fraction | 1ull << 52, (int)biased - 1075};
        f.hex = (struct hex_float){1, fraction, 13, (int)biased - 1023};
    }
    return f;
}

/* x86-64 80-bit long double; values beyond the decimal buffers' range are printed as doubles. */
static struct fp decompose_long_double(long double ld) {
    union {
        long double ld;
        struct {
            uint64_t mantissa;
            uint16_t sign_exponent;
        } p;
    } u = {ld};
    struct fp f = {u.p.sign_exponent >> 15, FP_FINITE, {0, 0}, {0, 0, 15, 0}};
    unsigned biased = u.p.sign_exponent & 0x7fff;
    uint64_t m = u.p.mantissa;
    if (biased == 0x7fff) {
        f.kind = m << 1 ? FP_NOT_A_NUMBER : FP_INFINITE;
        return f;
    }
    int exponent = (biased ? (int)biased : 1) - 16383 - 63;
    f.value = (struct binary){m, m ? exponent : 0};
    f.hex = (struct hex_float){(unsigned)(m >> 60), m & ((1ull << 60) - 1), 15, m ? exponent + 60 : 0};
    if (!fits_decimal(f.value)) {
        struct fp d = decompose_double((double)ld);
        f.value = d.value;
    }
    return f;
}

static void format_float(struct sink* o, const struct spec* s, struct fp f) {
    char c = s->conversion;
    int upper = c == 'F' || c == 'E' || c == 'G' || c == 'A';
    char sign = f.negative ? '-' : (s->flags & F_PLUS) ? '+' : (s->flags & F_SPACE) ? ' ' : 0;
    if (f.kind != FP_FINITE) {
        const char* text = f.kind == FP_INFINITE ? (upper ? "INF" : "inf") : (upper ? "NAN" : "nan");
        size_t prefix_len = sign != 0;
        hl_printf_pad_left(o, s, &sign, prefix_len, 0, 3);
        hl_printf_put_chars(o, text, 3);
        hl_printf_pad_right(o, s, prefix_len + 3);
        return;
    }
    if (c == 'a' || c == 'A') {
        format_hex(o, s, f.hex, sign);
        return;
    }
    struct decimal x;
    to_decimal(&x, f.value);
    int precision = s->precision < 0 ? 6 : s->precision;
    if (c == 'f' || c == 'F')
        format_fixed(o, s, &x, sign, precision);
    else if (c == 'e' || c == 'E')
        format_exponential(o, s, &x, sign, precision, upper ? 'E' : 'e');
    else
        format_general(o, s, &x, sign, precision);
}

void hl_printf_float(struct sink* o, const struct spec* s, va_list* ap) {
    if (s->length == LEN_LONG_DOUBLE)
        format_float(o, s, decompose_long_double(va_arg(*ap, long double)));
    else
        format_float(o, s, decompose_double(va_arg(*ap, double)));
}
