/* SPDX-License-Identifier: Apache-2.0 */
/* Build with -fno-builtin -fno-tree-loop-distribute-patterns, like the rest of the libc subset. */
#include <ctype.h>

#include "hl_libc.h"

/* The tables are glibc's "C" locale, with its _IS* bit layout from <ctype.h>, so that its macros work. */
#define IN(c, lo, hi) ((c) >= (lo) && (c) <= (hi))
#define IS_UPPER(c) IN(c, 'A', 'Z')
#define IS_LOWER(c) IN(c, 'a', 'z')
#define IS_DIGIT(c) IN(c, '0', '9')
#define IS_PUNCT(c) (IN(c, '!', '/') || IN(c, ':', '@') || IN(c, '[', '`') || IN(c, '{', '~'))
#define CLASS(c)                                                                                                     \
    ((IS_UPPER(c) ? _ISupper | _ISalpha | _ISalnum : 0) | (IS_LOWER(c) ? _ISlower | _ISalpha | _ISalnum : 0) |       \
     (IS_DIGIT(c) ? _ISdigit | _ISalnum : 0) | (IS_DIGIT(c) || IN(c, 'A', 'F') || IN(c, 'a', 'f') ? _ISxdigit : 0) | \
     (IN(c, '\t', '\r') || (c) == ' ' ? _ISspace : 0) | ((c) == '\t' || (c) == ' ' ? _ISblank : 0) |                 \
     (IN(c, 0, 31) || (c) == 127 ? _IScntrl : 0) | (IN(c, ' ', '~') ? _ISprint : 0) |                                \
     (IN(c, '!', '~') ? _ISgraph : 0) | (IS_PUNCT(c) ? _ISpunct : 0))
/* Like glibc, negative chars other than EOF map to their unsigned char value. */
#define UNSIGNED(c) ((c) < -1 ? (c) + 256 : (c))
#define LOWER(c) (IS_UPPER(c) ? (c) + ('a' - 'A') : UNSIGNED(c))
#define UPPER(c) (IS_LOWER(c) ? (c) - ('a' - 'A') : UNSIGNED(c))

#define ROW4(f, c) f(c), f((c) + 1), f((c) + 2), f((c) + 3)
#define ROW16(f, c) ROW4(f, c), ROW4(f, (c) + 4), ROW4(f, (c) + 8), ROW4(f, (c) + 12)
#define ROW64(f, c) ROW16(f, c), ROW16(f, (c) + 16), ROW16(f, (c) + 32), ROW16(f, (c) + 48)
#define ROW384(f) ROW64(f, -128), ROW64(f, -64), ROW64(f, 0), ROW64(f, 64), ROW64(f, 128), ROW64(f, 192)

static const unsigned short class_table[384] = {ROW384(CLASS)};
static const int32_t lower_table[384] = {ROW384(LOWER)};
static const int32_t upper_table[384] = {ROW384(UPPER)};
/* Set on every call rather than statically, so the guest image needs no data relocations. */
static const unsigned short* class_origin;
static const int32_t* lower_origin;
static const int32_t* upper_origin;

static int has_class(int c, unsigned short bits) { return IN(c, -128, 255) ? class_table[c + 128] & bits : 0; }

int hl_isalnum(int c) { return has_class(c, _ISalnum); }
int hl_isalpha(int c) { return has_class(c, _ISalpha); }
int hl_isblank(int c) { return has_class(c, _ISblank); }
int hl_iscntrl(int c) { return has_class(c, _IScntrl); }
int hl_isdigit(int c) { return has_class(c, _ISdigit); }
int hl_isgraph(int c) { return has_class(c, _ISgraph); }
int hl_islower(int c) { return has_class(c, _ISlower); }
int hl_isprint(int c) { return has_class(c, _ISprint); }
int hl_ispunct(int c) { return has_class(c, _ISpunct); }
int hl_isspace(int c) { return has_class(c, _ISspace); }
int hl_isupper(int c) { return has_class(c, _ISupper); }
int hl_isxdigit(int c) { return has_class(c, _ISxdigit); }
int hl_tolower(int c) { return IN(c, -128, 255) ? lower_table[c + 128] : c; }
int hl_toupper(int c) { return IN(c, -128, 255) ? upper_table[c + 128] : c; }

const unsigned short** hl_ctype_b_loc(void) {
    class_origin = class_table + 128;
    return &class_origin;
}

const int32_t** hl_ctype_tolower_loc(void) {
    lower_origin = lower_table + 128;
    return &lower_origin;
}

const int32_t** hl_ctype_toupper_loc(void) {
    upper_origin = upper_table + 128;
    return &upper_origin;
}

#ifdef HL_GUEST_BUILD
HL_ALIAS(isalnum);
HL_ALIAS(isalpha);
HL_ALIAS(isblank);
HL_ALIAS(iscntrl);
HL_ALIAS(isdigit);
HL_ALIAS(isgraph);
HL_ALIAS(islower);
HL_ALIAS(isprint);
HL_ALIAS(ispunct);
HL_ALIAS(isspace);
HL_ALIAS(isupper);
HL_ALIAS(isxdigit);
HL_ALIAS(tolower);
HL_ALIAS(toupper);
extern __typeof__(hl_ctype_b_loc) __ctype_b_loc __attribute__((alias("hl_ctype_b_loc")));
extern __typeof__(hl_ctype_tolower_loc) __ctype_tolower_loc __attribute__((alias("hl_ctype_tolower_loc")));
extern __typeof__(hl_ctype_toupper_loc) __ctype_toupper_loc __attribute__((alias("hl_ctype_toupper_loc")));
#endif
