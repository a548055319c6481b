/* SPDX-License-Identifier: Apache-2.0 */
/* Build with -fno-builtin -fno-tree-loop-distribute-patterns, like the rest of the libc subset. */
/*
 * A two-level segregated-fit allocator (TLSF): free blocks sit in 16 size classes per power of two,
 * found through two bitmaps, so malloc and free are O(1). Physical neighbours are merged on free. Every
 * block has a 16-byte header: the previous block's size (valid while that block is free) and this
 * block's size, flags and a tag that catches frees of pointers that are not live blocks.
 */
#ifdef HL_GUEST_BUILD
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#endif
#include <errno.h>

#include "hl_libc.h"

#define HEADER 16u
#define MIN_BLOCK 32u
#define FREE 1u
#define PREV_FREE 2u
#define FLAGS 15u
#define TAG_SHIFT 48
#define TAG ((uint64_t)0xa11c << TAG_SHIFT)
#define SIZE_BITS ((((uint64_t)1 << TAG_SHIFT) - 1) & ~(uint64_t)FLAGS)
#define MAX_REQUEST ((size_t)1 << (TAG_SHIFT - 2))

#define SL_LOG2 4
#define SL_COUNT (1u << SL_LOG2)
#define FL_SHIFT (SL_LOG2 + 4)
#define SMALL_SIZE (1u << FL_SHIFT)
#define FL_COUNT (TAG_SHIFT - FL_SHIFT + 1)

struct block {
    uint64_t prev_size;
    uint64_t word;
    struct block* next_free;
    struct block* prev_free;
};

static struct {
    char* start;
    char* end;
    size_t used;
    uint64_t fl_map;
    uint32_t sl_map[FL_COUNT];
    struct block* bins[FL_COUNT][SL_COUNT];
} heap;

static size_t block_size(const struct block* b) { return b->word & SIZE_BITS; }
static struct block* next_block(struct block* b) { return (struct block*)((char*)b + block_size(b)); }
static struct block* block_of(void* p) { return (struct block*)((char*)p - HEADER); }
static void* payload(struct block* b) { return (char*)b + HEADER; }
static int is_free(const struct block* b) { return (b->word & FREE) != 0; }
static int tag_ok(const struct block* b) { return (b->word & ~(SIZE_BITS | FLAGS)) == TAG; }

static void set_header(struct block* b, size_t size, uint64_t flags) { b->word = TAG | size | flags; }

static void mapping(size_t size, unsigned* fl, unsigned* sl) {
    if (size < SMALL_SIZE) {
        *fl = 0;
        *sl = (unsigned)(size / (SMALL_SIZE / SL_COUNT));
        return;
    }
    unsigned top = 63u - (unsigned)__builtin_clzll(size);
    *sl = (unsigned)(size >> (top - SL_LOG2)) ^ SL_COUNT;
    *fl = top - (FL_SHIFT - 1);
}

static void insert_free(struct block* b) {
    unsigned fl, sl;
    mapping(block_size(b), &fl, &sl);
    b->prev_free = NULL;
    b->next_free = heap.bins[fl][sl];
    if (b->next_free) b->next_free->prev_free = b;
    heap.bins[fl][sl] = b;
    heap.fl_map |= 1ull << fl;
    heap.sl_map[fl] |= 1u << sl;
}

static void remove_free(struct block* b) {
    unsigned fl, sl;
    mapping(block_size(b), &fl, &sl);
    if (b->next_free) b->next_free->prev_free = b->prev_free;
    if (b->prev_free) {
        b->prev_free->next_free = b->next_free;
        return;
    }
    heap.bins[fl][sl] = b->next_free;
    if (!b->next_free) {
        heap.sl_map[fl] &= ~(1u << sl);
        if (!heap.sl_map[fl]) heap.fl_map &= ~(1ull << fl);
    }
}

/* Searches from the class above `size`, where any block fits; near exhaustion the blocks of its own
 * class, which may fit too, are tried one by one. */
static struct block* find_free(size_t size) {
    unsigned fl, sl;
    size_t rounded = size;
    if (size >= SMALL_SIZE) rounded += ((size_t)1 << (63u - (unsigned)__builtin_clzll(size) - SL_LOG2)) - 1;
    mapping(rounded, &fl, &sl);
    if (fl < FL_COUNT) {
        uint32_t sl_map = heap.sl_map[fl] & (~0u << sl);
        if (!sl_map) {
            uint64_t fl_map = heap.fl_map & (~0ull << (fl + 1));
            if (fl_map) {
                fl = (unsigned)__builtin_ctzll(fl_map);
                sl_map = heap.sl_map[fl];
            }
        }
        if (sl_map) return heap.bins[fl][__builtin_ctz(sl_map)];
    }
    mapping(size, &fl, &sl);
    if (fl >= FL_COUNT) return NULL;
    for (struct block* b = heap.bins[fl][sl]; b; b = b->next_free)
        if (block_size(b) >= size) return b;
    return NULL;
}

/* Marks the block allocated; the caller has taken it off its free list. */
static void mark_used(struct block* b) {
    b->word &= ~(uint64_t)FREE;
    next_block(b)->word &= ~(uint64_t)PREV_FREE;
    heap.used += block_size(b);
}

/* Frees an allocated block whose header has been checked, merging it with free neighbours. */
static void release(struct block* b) {
    size_t size = block_size(b);
    heap.used -= size;
    struct block* next = next_block(b);
    /* Headers swallowed by a merge lose their tag, so a second free of them is caught. */
    if (is_free(next)) {
        remove_free(next);
        size += block_size(next);
        next->word = 0;
    }
    if (b->word & PREV_FREE) {
        struct block* prev = (struct block*)((char*)b - b->prev_size);
        remove_free(prev);
        size += block_size(prev);
        b->word = 0;
        b = prev;
    }
    set_header(b, size, FREE);
    next = next_block(b);
    next->prev_size = size;
    next->word |= PREV_FREE;
    insert_free(b);
}

/* Returns the part of an allocated block past `size` bytes to the free lists, if it can hold a block. */
static void trim(struct block* b, size_t size) {
    size_t total = block_size(b);
    if (total - size < MIN_BLOCK) return;
    set_header(b, size, b->word & PREV_FREE);
    struct block* rest = next_block(b);
    set_header(rest, total - size, 0);
    release(rest);
}

/* Block size for a request, or 0 when the request cannot be met. */
static size_t block_size_for(size_t request) {
    if (request > MAX_REQUEST) return 0;
    size_t size = ((request + 15) & ~(size_t)15) + HEADER;
    return size < MIN_BLOCK ? MIN_BLOCK : size;
}

/* The live block behind a payload pointer, or NULL after reporting a pointer that is not one. */
static struct block* checked_block(void* p) {
    uintptr_t at = (uintptr_t)p;
    struct block* b = block_of(p);
    if ((at & 15) || at < (uintptr_t)heap.start + HEADER || at >= (uintptr_t)heap.end || !tag_ok(b) || is_free(b) ||
        block_size(b) < MIN_BLOCK || block_size(b) > (size_t)(heap.end - (char*)b)) {
        hl_heap_corrupted();
        return NULL;
    }
    struct block* next = next_block(b);
    if (!tag_ok(next) || (next->word & PREV_FREE)) {
        hl_heap_corrupted();
        return NULL;
    }
    if ((b->word & PREV_FREE)) {
        struct block* prev = (struct block*)((char*)b - b->prev_size);
        if (b->prev_size > (size_t)((char*)b - heap.start) || !tag_ok(prev) || !is_free(prev) ||
            block_size(prev) != b->prev_size) {
            hl_heap_corrupted();
            return NULL;
        }
    }
    return b;
}

void hl_heap_init(void* base, size_t size) {
    uintptr_t start = ((uintptr_t)base + 15) & ~(uintptr_t)15;
    uintptr_t end = ((uintptr_t)base + size) & ~(uintptr_t)15;
    for (unsigned i = 0; i < FL_COUNT; i++) {
        heap.sl_map[i] = 0;
        for (unsigned j = 0; j < SL_COUNT; j++) heap.bins[i][j] = NULL;
    }
    heap.fl_map = 0;
    heap.used = 0;
    heap.start = heap.end = NULL;
    if (end < start || end - start < MIN_BLOCK + HEADER) return;
    if (end - start > SIZE_BITS) end = start + SIZE_BITS;
    heap.start = (char*)start;
    heap.end = (char*)end - HEADER;
    struct block* first = (struct block*)heap.start;
    size_t first_size = (size_t)(heap.end - heap.start);
    first->prev_size = 0;
    set_header(first, first_size, FREE);
    struct block* sentinel = (struct block*)heap.end;
    sentinel->prev_size = first_size;
    set_header(sentinel, 0, PREV_FREE);
    insert_free(first);
}

void* hl_malloc(size_t request) {
    size_t size = block_size_for(request);
    struct block* b = size ? find_free(size) : NULL;
    if (!b) {
        errno = ENOMEM;
        return NULL;
    }
    remove_free(b);
    mark_used(b);
    trim(b, size);
    return payload(b);
}

void hl_free(void* p) {
    if (!p) return;
    struct block* b = checked_block(p);
    if (b) release(b);
}

void* hl_calloc(size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void* p = hl_malloc(total);
    if (p) hl_memset(p, 0, total);
    return p;
}

void* hl_realloc(void* p, size_t request) {
    if (!p) return hl_malloc(request);
    if (!request) {
        hl_free(p);
        return NULL;
    }
    struct block* b = checked_block(p);
    if (!b) return NULL;
    size_t size = block_size_for(request), have = block_size(b);
    if (!size) {
        errno = ENOMEM;
        return NULL;
    }
    struct block* next = next_block(b);
    if (size > have && is_free(next) && have + block_size(next) >= size) {
        remove_free(next);
        heap.used += block_size(next);
        set_header(b, have + block_size(next), b->word & PREV_FREE);
        next_block(b)->word &= ~(uint64_t)PREV_FREE;
        next->word = 0;
        have = block_size(b);
    }
    if (size <= have) {
        trim(b, size);
        return p;
    }
    void* moved = hl_malloc(request);
    if (moved) {
        hl_memcpy(moved, p, have - HEADER);
        release(b);
    }
    return moved;
}

void* hl_aligned_alloc(size_t alignment, size_t request) {
    if (!alignment || (alignment & (alignment - 1))) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= 16) return hl_malloc(request);
    size_t size = block_size_for(request);
    if (!size || alignment > MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    /* Over-allocate so that the gap before the aligned payload is empty or big enough to be freed. */
    char* p = hl_malloc(request + alignment + MIN_BLOCK);
    if (!p) return NULL;
    char* aligned = (char*)(((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1));
    if (aligned != p && (size_t)(aligned - p) < MIN_BLOCK) aligned += alignment;
    struct block* b = block_of(p);
    if (aligned != p) {
        size_t gap = (size_t)(aligned - p), total = block_size(b);
        struct block* a = block_of(aligned);
        set_header(a, total - gap, 0);
        set_header(b, gap, b->word & PREV_FREE);
        release(b);
        b = a;
    }
    trim(b, size);
    return aligned;
}

int hl_posix_memalign(void** out, size_t alignment, size_t request) {
    if (!alignment || alignment % sizeof(void*) || (alignment & (alignment - 1))) return EINVAL;
    int saved = errno;
    void* p = hl_aligned_alloc(alignment, request);
    errno = saved;
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void* hl_memalign(size_t alignment, size_t request) {
    if (alignment & (alignment - 1))
        alignment = alignment > MAX_REQUEST ? 0 : (size_t)2 << (63 - __builtin_clzll(alignment));
    return hl_aligned_alloc(alignment ? alignment : 1, request);
}

size_t hl_malloc_usable_size(void* p) {
    if (!p) return 0;
    struct block* b = checked_block(p);
    return b ? block_size(b) - HEADER : 0;
}

size_t hl_heap_used(void) { return heap.used; }

#ifdef HL_GUEST_BUILD
HL_ALIAS(malloc);
HL_ALIAS(free);
HL_ALIAS(calloc);
HL_ALIAS(realloc);
HL_ALIAS(aligned_alloc);
HL_ALIAS(posix_memalign);
HL_ALIAS(memalign);
HL_ALIAS(malloc_usable_size);
#endif
