/*
 * tinylm.tokenizer._bpe_encode: Tokenizer.encode_ordinary (GPT-2 pre-tokenization + BPE) in C.
 *
 * Encoder(byte_ids, merges, letter_ranges, number_ranges, space_ranges)
 *   byte_ids:  256 ints, the id of each single byte;
 *   merges:    (left id, right id, merged id) in rank order; a pair given twice keeps its first
 *              rank (as Tokenizer._ranks.setdefault does);
 *   *_ranges:  (start, end) code point ranges, end exclusive, of \p{L}, \p{N} and \s as the
 *              `regex` module sees them (built by tinylm.tokenizer._native).
 * Encoder.encode_ordinary(text) -> list[int]; Encoder.encode(text, specials, itemsize) cuts at
 * special tokens too and can pack the ids for an array; encode_utf8 / count_pretokens_utf8 take
 * UTF-8 bytes (a file's) with no str made, checked as Python's strict decoder checks them.
 *
 * Same result as the pure-Python path (pretokenize + Tokenizer._bpe):
 *   - the text is taken as UTF-8 (ASCII str: its own buffer; otherwise a UTF-8 copy kept with
 *     the str as CPython keeps its own, made 16 code units at a time: _str_utf8.h), so a str
 *     holding surrogates raises UnicodeEncodeError and the Python caller retries with them
 *     replaced, exactly as the Python path does;
 *   - pre-tokens are found by a hand-written matcher equivalent to the GPT-2 pattern
 *       '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     with its backtracking (a whitespace run of two or more characters followed by a
 *     non-space leaves its last character to the next pre-token): in ASCII 64 bytes at a time
 *     from byte-class bit masks (scan_pieces), elsewhere one code point at a time (next_piece);
 *   - each pre-token's bytes are merged lowest rank first, every non-overlapping occurrence
 *     of the best pair left to right per round (as Tokenizer._bpe); the first round's ranks
 *     come from a table of all byte pairs;
 *   - pre-token bytes -> ids are cached per Encoder (the cache key is never more than one
 *     pre-token): pre-tokens of 1..16 bytes in an open-addressing table of 32-byte entries
 *     holding key and up to 3 ids inline (one memory access per hit; 2^16 slots, 2 MB, on first
 *     use, doubling at load 5/8 up to 2^19, 16 MB, on huge pages, then cleared past SMALL_LIMIT),
 *     or marking the pre-token as one of the general table's (slot, then arena; cleared past
 *     CACHE_LIMIT entries), which holds the others; a batch's lookups are prefetched together;
 *   - packed ids (uint16 / uint32) are written in that type as they are found, into memory a
 *     PackedIds buffer then owns;
 *   - counting (count_pretokens / take_counts) keeps pre-tokens of up to 16 bytes, key and count
 *     inline, in an open-addressing table that doubles as it fills; longer ones in a general table.
 *
 * The core loop runs without the GIL; a per-Encoder lock guards the cache and scratch space.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "_str_utf8.h"

#define NCODEPOINTS 0x110000
#define NO_RANK INT32_MAX
#define CACHE_SLOTS (1u << 19)       /* power of two */
#define CACHE_LIMIT 200000            /* entries; the table is cleared past this */
#define CACHE_ARENA_LIMIT (64u << 20) /* bytes of cached keys + ids; cleared past this */
#define CACHE_MAX_KEY 1024            /* longer pre-tokens are not cached */
#define IDOBJ_LIMIT (1 << 24)         /* ids below this get a shared PyLong */
#define SMALL_MAX_KEY 16              /* pre-tokens of up to 16 bytes: two words, in the small cache */
#define SMALL_MAX_IDS 3
#define SMALL_MIN_BITS 16             /* first size of the small cache: 2^16 slots of 32 bytes (2 MB, one huge page) */
#define SMALL_MAX_BITS 19             /* largest: 2^19 slots (16 MB); it doubles at load 5/8 up to this */
#define SMALL_LIMIT (5u << 16)        /* entries at the largest size (load 5/8); cleared past this */
#define SCOUNT_MIN_BITS 14            /* first size of the short-piece count table (slots) */

/* A pre-token of 1..16 bytes and its 1..3 ids, inline: one memory access per hit, where the
   general cache takes two (slot, then arena). k0, k1: the key bytes in memory order, zero-padded;
   meta: key length | id count << 8, 0 = empty slot. */
typedef struct {
    uint64_t k0, k1;
    uint32_t meta;
    int32_t ids[SMALL_MAX_IDS];
} SmallEntry;

/* A pre-token of 1..16 bytes and its count, inline (one memory access per count): k0, k1 as in
   SmallEntry; len 0 = empty slot. */
typedef struct {
    uint64_t k0, k1;
    uint64_t len;
    int64_t count;
} ShortCount;

enum { K_OTHER = 0, K_LETTER = 1, K_NUMBER = 2, K_SPACE = 3 };

/* One slot of the merge table: key (a << 32 | b), its rank and merged id side by side, one
   memory access. */
typedef struct {
    uint64_t key;
    int32_t rank, merged;
} MergeSlot;

/* The rank and merged id of a pair of single-byte tokens (NO_RANK: no merge). */
typedef struct {
    int32_t rank, merged;
} PairRank;

typedef struct {
    uint64_t hash;
    int64_t count;
    size_t off;   /* key bytes at ckeys[off .. off + len) */
    size_t len;
} CountEntry;

typedef struct {
    PyObject_HEAD
    uint8_t *cls;             /* NCODEPOINTS classes */
    int ascii_std;            /* cls[0..127] are the standard ASCII classes: scan_pieces' fast path */
    int32_t byte_ids[256];

    /* merges: (a, b) -> rank in an open-addressing table; rank -> a, b, merged id */
    MergeSlot *mslots;        /* (a, b) -> rank, open addressing; key UINT64_MAX = empty */
    uint64_t mmask;
    int mshift;               /* 64 - log2(slots): merge_slot's shift */
    PairRank *bytepairs;      /* (byte x, byte y) at x << 8 | y: the first round of every merge */
    int32_t nmerges;

    PyObject **idobj;         /* PyLong for ids 0..nidobj-1 */
    int32_t nidobj;

    /* cache: slot = (hash >> 32) << 32 | (arena offset + 1), 0 = empty */
    uint64_t *slots;
    uint8_t *arena;
    size_t narena, carena;
    int32_t ncache;
    uint32_t cache_gen;       /* bumped by every cache_clear: small-cache entries pointing into the
                                 arena are valid only for the generation they were filed in */

    SmallEntry *small;        /* 1 << sbits slots, NULL until the first encode */
    uint32_t nsmall;
    int sbits;
    ShortCount *scounts;      /* scmask + 1 slots (NULL until the first count), nscount in use */
    size_t scmask, nscount;

    /* BPE scratch */
    int32_t *work_ids, *work_ranks, *work_merged;
    size_t cwork;

    /* pre-token counts (count_pretokens / take_counts): entries in an open-addressing table,
       keys in their own arena */
    CountEntry *centries;
    size_t ncent, ccent;
    uint32_t *cslots;         /* entry index + 1, 0 = empty */
    size_t cmask;
    uint8_t *ckeys;
    size_t nckeys, cckeys;

    PyThread_type_lock lock;
} Encoder;

/* ------------------------------------------------------------------------------------------ */
/* Large zeroed tables                                                                        */

/* size bytes of zeroed memory for a table read at random (free with table_free(p, size)). On
   Linux an anonymous mapping aligned to 2 MB and advised for transparent huge pages: a random
   access into a table of several MB then costs no TLB miss (measured: a 16 MB cache on 4 KB
   pages encoded 13% slower than an 8 MB one). NULL when out of memory. */
static void *table_alloc(size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    size_t span = size + HUGE_PAGE_BYTES;
    uint8_t *raw = (uint8_t *)mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == (uint8_t *)MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + span - (p + size));
    if (tail) munmap(p + size, tail);
    madvise(p, size, MADV_HUGEPAGE); /* advice only: without THP the pages are simply small */
    return p;
#else
    return calloc(1, size);
#endif
}

static void table_free(void *p, size_t size) {
    if (!p) return;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    munmap(p, size);
#else
    (void)size;
    free(p);
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* Hashing                                                                                    */

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w);
}

/* The len <= 8 bytes at p as one word, the bytes in memory order and the rest zero; end bounds
   the readable buffer (a whole-word load when 8 bytes are readable, then masked). */
static inline uint64_t short_key(const uint8_t *p, size_t len, const uint8_t *end) {
    uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if ((size_t)(end - p) >= 8) {
        memcpy(&w, p, 8);
        return len == 8 ? w : w & ((1ULL << (8 * len)) - 1);
    }
#else
    (void)end;
#endif
    memcpy(&w, p, len);
    return w;
}

/* Home slot of a merge key: Fibonacci hashing, the top bits of key * 2^64/phi. */
static inline uint64_t merge_slot(uint64_t key, int shift) { return (key * 0x9E3779B97F4A7C15ULL) >> shift; }

/* The rank of merging ids a and b (NO_RANK: none), its merged id in *merged. */
static inline int32_t merge_rank(const Encoder *e, int32_t a, int32_t b, int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    for (uint64_t h = merge_slot(key, e->mshift);; h = (h + 1) & e->mmask) {
        const MergeSlot *m = &e->mslots[h];
        if (m->key == key) {
            *merged = m->merged;
            return m->rank;
        }
        if (m->key == UINT64_MAX) return NO_RANK;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* BPE of one pre-token (Tokenizer._bpe)                                                      */

static int ensure_work(Encoder *e, size_t n) {
    if (n <= e->cwork) return 0;
    size_t nc = e->cwork ? e->cwork : 64;
    while (nc < n) nc *= 2;
    int32_t *ni = (int32_t *)realloc(e->work_ids, nc * sizeof(int32_t));
    if (!ni) return -1;
    e->work_ids = ni;
    int32_t *nr = (int32_t *)realloc(e->work_ranks, nc * sizeof(int32_t));
    if (!nr) return -1;
    e->work_ranks = nr;
    int32_t *nm = (int32_t *)realloc(e->work_merged, nc * sizeof(int32_t));
    if (!nm) return -1;
    e->work_merged = nm;
    e->cwork = nc;
    return 0;
}

/* Merges the n >= 1 bytes p into e->work_ids; returns the number of ids, or -1 (memory).
   rk[i] and mg[i] are the rank and merged id of the pair (ids[i], ids[i + 1]): the first round
   from the byte-pair table, later ones from the merge table for pairs with a new id. */
static Py_ssize_t bpe(Encoder *e, const uint8_t *p, size_t n) {
    if (ensure_work(e, n) < 0) return -1;
    int32_t *ids = e->work_ids, *rk = e->work_ranks, *mg = e->work_merged;
    for (size_t i = 0; i < n; i++) ids[i] = e->byte_ids[p[i]];
    for (size_t i = 0; i + 1 < n; i++) {
        const PairRank *pr = &e->bytepairs[(size_t)p[i] << 8 | p[i + 1]];
        rk[i] = pr->rank;
        mg[i] = pr->merged;
    }
    while (n > 1) {
        int32_t best = NO_RANK;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < best) {
                best = rk[i];
                at = i;
            }
        if (best == NO_RANK) break;
        int32_t a = ids[at], b = ids[at + 1], c = mg[at];
        /* every occurrence, leftmost first, never overlapping; in place (m <= i). rk[m - 1]
           is the rank of (ids[m - 1], ids[m]): looked up when either side is new, otherwise
           the two were neighbours before and keep their old rank rk[i - 1]. */
        size_t m = at, i = at; /* nothing before the first occurrence changes */
        int prev_new = 0;
        while (i < n) {
            int32_t id;
            int is_new;
            size_t old = i;
            if (i + 1 < n && ids[i] == a && ids[i + 1] == b) {
                id = c;
                is_new = 1;
                i += 2;
            } else {
                id = ids[i];
                is_new = 0;
                i += 1;
            }
            if (m > 0) {
                if (is_new || prev_new) {
                    rk[m - 1] = merge_rank(e, ids[m - 1], id, &mg[m - 1]);
                } else {
                    rk[m - 1] = rk[old - 1];
                    mg[m - 1] = mg[old - 1];
                }
            }
            ids[m++] = id;
            prev_new = is_new;
        }
        n = m;
    }
    return (Py_ssize_t)n;
}

/* ------------------------------------------------------------------------------------------ */
/* Cache: arena entries are [uint32 key length][uint32 id count][key, padded to 4][ids]        */

static void cache_clear(Encoder *e) {
    memset(e->slots, 0, CACHE_SLOTS * sizeof(uint64_t));
    e->narena = 0;
    e->ncache = 0;
    e->cache_gen++;
}

static inline size_t entry_key_space(size_t keylen) { return (keylen + 3) & ~(size_t)3; }

/* The cached ids of key (count in *nids), or NULL. */
static inline const int32_t *cache_get(const Encoder *e, const uint8_t *key, size_t len, uint64_t h,
                                       uint32_t *nids) {
    uint32_t tag = (uint32_t)(h >> 32);
    size_t s = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        uint64_t v = e->slots[s];
        if (v == 0) return NULL;
        if ((uint32_t)(v >> 32) == tag) {
            const uint8_t *ent = e->arena + ((uint32_t)v - 1);
            uint32_t kl, ni;
            memcpy(&kl, ent, 4);
            if (kl == len && memcmp(ent + 8, key, len) == 0) {
                memcpy(&ni, ent + 4, 4);
                *nids = ni;
                return (const int32_t *)(ent + 8 + entry_key_space(len));
            }
        }
        s = (s + 1) & (CACHE_SLOTS - 1);
    }
}

/* Files key -> ids (not present); the entry's arena offset in *at (NULL: not wanted), valid until
   the next cache_clear (e->cache_gen changes). 0, or -1 on memory error. */
static int cache_put(Encoder *e, const uint8_t *key, size_t len, uint64_t h, const int32_t *ids, size_t nids,
                     uint32_t *at) {
    size_t need = 8 + entry_key_space(len) + nids * sizeof(int32_t);
    if (e->ncache >= CACHE_LIMIT || e->narena + need > CACHE_ARENA_LIMIT) cache_clear(e);
    if (e->narena + need > e->carena) {
        size_t nc = e->carena ? e->carena : (1u << 20);
        while (nc < e->narena + need) nc *= 2;
        uint8_t *na = (uint8_t *)realloc(e->arena, nc);
        if (!na) return -1;
        e->arena = na;
        e->carena = nc;
    }
    uint8_t *ent = e->arena + e->narena;
    uint32_t kl = (uint32_t)len, ni = (uint32_t)nids;
    memcpy(ent, &kl, 4);
    memcpy(ent + 4, &ni, 4);
    memcpy(ent + 8, key, len);
    memcpy(ent + 8 + entry_key_space(len), ids, nids * sizeof(int32_t));
    size_t s = (size_t)h & (CACHE_SLOTS - 1);
    while (e->slots[s] != 0) s = (s + 1) & (CACHE_SLOTS - 1);
    e->slots[s] = ((h >> 32) << 32) | (uint64_t)(e->narena + 1);
    if (at) *at = (uint32_t)e->narena; /* < CACHE_ARENA_LIMIT */
    e->narena += need;
    e->ncache++;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Output buffer                                                                              */

/* The ids of one call, n of them in v[0 .. n * itemsize), in the form the caller gets them:
   int32 (itemsize 4: for a list, or packed uint32) or uint16 (itemsize 2), written in place, so
   packed output needs no second pass and no second buffer. top: the bitwise OR of the uint16
   ids written (above 0xFFFF when one did not fit). */
typedef struct {
    uint8_t *v;
    size_t n, cap;
    size_t itemsize;
    uint32_t top;
} IdBuf;

static inline int out_reserve(IdBuf *o, size_t extra) {
    if (o->n + extra <= o->cap) return 0;
    size_t nc = o->cap ? o->cap * 2 : 1024;
    while (nc < o->n + extra) nc *= 2;
    uint8_t *nv = (uint8_t *)realloc(o->v, nc * o->itemsize);
    if (!nv) return -1;
    o->v = nv;
    o->cap = nc;
    return 0;
}

/* Writes ids[0..3) at o's end (o has room for 3 more) and counts the first k of them; ids past
   k are scratch, overwritten by the next write. */
static inline void out_put3(IdBuf *o, const int32_t *ids, size_t k) {
    if (o->itemsize == 4) {
        memcpy(o->v + 4 * o->n, ids, 3 * sizeof(int32_t));
    } else {
        uint16_t *d = (uint16_t *)(void *)o->v + o->n;
        d[0] = (uint16_t)ids[0];
        d[1] = (uint16_t)ids[1];
        d[2] = (uint16_t)ids[2];
        o->top |= (uint32_t)ids[0] | (uint32_t)ids[1] | (uint32_t)ids[2];
    }
    o->n += k;
}

/* Appends ids[0..k) to o, which has room for them. */
static inline void out_put(IdBuf *o, const int32_t *ids, size_t k) {
    if (o->itemsize == 4) {
        memcpy(o->v + 4 * o->n, ids, k * sizeof(int32_t));
    } else {
        uint16_t *d = (uint16_t *)(void *)o->v + o->n;
        for (size_t j = 0; j < k; j++) {
            d[j] = (uint16_t)ids[j];
            o->top |= (uint32_t)ids[j];
        }
    }
    o->n += k;
}


/* The ids of the pre-token p[0..len), len >= 1: from the general cache, or merged (and then
   cached there); their count in *nids. NULL on memory error. The result stays valid until the
   next call. */
static const int32_t *piece_ids(Encoder *e, const uint8_t *p, size_t len, size_t *nids) {
    uint64_t h = 0;
    if (len <= CACHE_MAX_KEY) {
        uint32_t n32;
        h = hash_bytes(p, len);
        const int32_t *ids = cache_get(e, p, len, h, &n32);
        if (ids) {
            *nids = n32;
            return ids;
        }
    }
    Py_ssize_t n = bpe(e, p, len);
    if (n < 0) return NULL;
    if (len <= CACHE_MAX_KEY && cache_put(e, p, len, h, e->work_ids, (size_t)n, NULL) < 0) return NULL;
    *nids = (size_t)n;
    return e->work_ids;
}

/* ------------------------------------------------------------------------------------------ */
/* Small cache: pre-tokens of 1..16 bytes with up to 3 ids, inline, open addressing            */

static inline size_t small_slots(const Encoder *e) { return (size_t)1 << e->sbits; }

/* Home slot of a small-cache key in a table of 2^bits slots. */
static inline size_t small_slot(uint64_t k0, uint64_t k1, size_t len, int bits) {
    uint64_t h = (k0 * 0x9E3779B97F4A7C15ULL) ^ (k1 * 0xC2B2AE3D27D4EB4FULL) ^ (uint64_t)len;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    return (size_t)(h >> (64 - bits));
}

static void small_clear(Encoder *e) {
    if (e->small) memset(e->small, 0, small_slots(e) * sizeof(SmallEntry));
    e->nsmall = 0;
}

/* Allocates the small cache (2^SMALL_MIN_BITS slots) on first use. 0, or -1 (memory). */
static int small_ready(Encoder *e) {
    if (e->small) return 0;
    e->small = (SmallEntry *)table_alloc(((size_t)1 << SMALL_MIN_BITS) * sizeof(SmallEntry));
    e->sbits = SMALL_MIN_BITS;
    e->nsmall = 0;
    return e->small ? 0 : -1;
}

/* Doubles the small cache, moving its entries. 0, or -1 (memory; the table is unchanged). */
static int small_grow(Encoder *e) {
    int bits = e->sbits + 1;
    size_t mask = ((size_t)1 << bits) - 1;
    SmallEntry *t = (SmallEntry *)table_alloc((mask + 1) * sizeof(SmallEntry));
    if (!t) return -1;
    for (size_t i = 0, n = small_slots(e); i < n; i++) {
        const SmallEntry *x = &e->small[i];
        if (!x->meta) continue;
        size_t s = small_slot(x->k0, x->k1, x->meta & 0xFF, bits);
        while (t[s].meta) s = (s + 1) & mask;
        t[s] = *x;
    }
    table_free(e->small, small_slots(e) * sizeof(SmallEntry));
    e->small = t;
    e->sbits = bits;
    return 0;
}

/* Sizes the small cache for encoding n more bytes: a table holding about n / 128 entries at load
   5/8 (2^16 to 2^19 slots), made now rather than by doubling as the distinct pre-tokens arrive
   (each doubling moves every entry to a new table: measured, 20 MB of English fresh encoded 7.5%
   faster starting at 2^18 slots than growing to it). n / 128 is a little above the distinct
   pre-tokens of up to 16 bytes counted in English web text: 57K in 5 MB, 133K in 20 MB; the table
   still doubles past the estimate. Only a cache: when memory is short it keeps its size. */
static void small_expect(Encoder *e, size_t n) {
    int bits = SMALL_MIN_BITS;
    while (bits < SMALL_MAX_BITS && (((size_t)5 << bits) >> 3) < n / 128) bits++;
    if (!e->small) { /* on failure small_ready tries the smallest size */
        e->small = (SmallEntry *)table_alloc(((size_t)1 << bits) * sizeof(SmallEntry));
        e->sbits = bits;
        e->nsmall = 0;
        return;
    }
    while (e->sbits < bits && small_grow(e) == 0) {
    }
}

/* Makes room for `more` (<= 5/8 of the smallest table) new small-cache entries under load 5/8:
   doubles the table, or at its largest size (or when memory for a larger one is short: it is
   only a cache) clears it. */
static void small_room(Encoder *e, size_t more) {
    while (e->nsmall + more > ((size_t)5 << e->sbits) >> 3) {
        if (e->sbits >= SMALL_MAX_BITS || small_grow(e) < 0) {
            small_clear(e);
            return;
        }
    }
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORD_LOADS 1 /* a word's first bytes in memory are its low bytes */
#else
#define WORD_LOADS 0
#endif

/* small_mask[len]: the masks that keep the first len bytes (0..16) of two little-endian words. */
static uint64_t small_mask[SMALL_MAX_KEY + 1][2];

static void small_masks_init(void) {
    for (size_t len = 0; len <= SMALL_MAX_KEY; len++) {
        size_t a = len < 8 ? len : 8, b = len > 8 ? len - 8 : 0;
        small_mask[len][0] = a == 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * a)) - 1);
        small_mask[len][1] = b == 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * b)) - 1);
    }
}

/* The small-cache key of p[0..len), 1 <= len <= 16 (end: end of the readable text): two words,
   the bytes in memory order, zero-padded. Where 16 bytes are readable, two whole-word loads
   masked to the key (no branch on the length). */
static inline void small_key(const uint8_t *p, size_t len, const uint8_t *end, uint64_t *k0, uint64_t *k1) {
    if (WORD_LOADS && (size_t)(end - p) >= 16) {
        memcpy(k0, p, 8);
        memcpy(k1, p + 8, 8);
        *k0 &= small_mask[len][0];
        *k1 &= small_mask[len][1];
    } else if (len <= 8) {
        *k0 = short_key(p, len, end);
        *k1 = 0;
    } else {
        memcpy(k0, p, 8);
        *k1 = short_key(p + 8, len - 8, end);
    }
}

/* Files the pre-token p[0..len), merged into e->work_ids[0 .. n) with n > SMALL_MAX_IDS, in the
   general cache and points the small-cache entry x at it: ids[0] the arena offset, ids[1] the
   general cache's generation (the caller sets x's id count to 0). A generation recurs only after
   2^32 clears, each of which takes at least ~13,000 new entries (a full 64 MB arena), so a stale
   offset cannot pass for a live one. 0, or -1 on memory error. */
static int small_file_general(Encoder *e, SmallEntry *x, const uint8_t *p, size_t len, size_t n) {
    uint32_t at;
    if (cache_put(e, p, len, hash_bytes(p, len), e->work_ids, n, &at) < 0) return -1;
    x->ids[0] = (int32_t)at;
    x->ids[1] = (int32_t)e->cache_gen;
    x->ids[2] = 0;
    return 0;
}

/* Appends the ids of the pre-token p[0..len), 1 <= len <= 16, with small-cache key k0, k1 and
   home slot s, to o, which has room for len + SMALL_MAX_IDS more ids (a pre-token never has
   more ids than bytes); the small cache has room for one more entry (small_room). A small-cache
   entry holds the ids, or (id count 0) the offset of the pre-token's entry in the general cache's
   arena and the generation it was filed in: a hit goes straight to the ids, with no hashing, slot
   or key comparison (the small entry's key already matched), and a miss in the small cache merges
   at once, never looking in the general one. 0, or -1 on memory error. */
static inline int encode_small(Encoder *e, const uint8_t *p, size_t len, uint64_t k0, uint64_t k1, size_t s, IdBuf *o) {
    SmallEntry *t = e->small;
    for (size_t mask = small_slots(e) - 1;; s = (s + 1) & mask) {
        uint32_t m = t[s].meta;
        if (m == 0) break;
        if ((m & 0xFF) == len && t[s].k0 == k0 && t[s].k1 == k1) {
            if (m >> 8) {
                out_put3(o, t[s].ids, m >> 8); /* all 3: o has room; only m >> 8 count */
                return 0;
            }
            if ((uint32_t)t[s].ids[1] == e->cache_gen) { /* its arena entry is still there */
                const uint8_t *ent = e->arena + (uint32_t)t[s].ids[0];
                uint32_t ni;
                memcpy(&ni, ent + 4, 4);
                out_put(o, (const int32_t *)(const void *)(ent + 8 + entry_key_space(len)), ni);
                return 0;
            }
            Py_ssize_t n = bpe(e, p, len); /* the general cache was cleared since: merge and file again */
            if (n < 0 || small_file_general(e, &t[s], p, len, (size_t)n) < 0) return -1;
            out_put(o, e->work_ids, (size_t)n);
            return 0;
        }
    }
    Py_ssize_t n = bpe(e, p, len);
    if (n < 0) return -1;
    const int32_t *ids = e->work_ids;
    out_put(o, ids, (size_t)n);
    t[s].k0 = k0;
    t[s].k1 = k1;
    if (n > SMALL_MAX_IDS) {
        if (small_file_general(e, &t[s], p, len, (size_t)n) < 0) return -1;
        n = 0; /* the entry says: in the general cache, at ids[0] */
    } else {
        memset(t[s].ids, 0, sizeof t[s].ids);
        memcpy(t[s].ids, ids, (size_t)n * sizeof(int32_t));
    }
    t[s].meta = (uint32_t)len | (uint32_t)n << 8;
    e->nsmall++;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* GPT-2 pre-tokenization over valid UTF-8                                                    */

static inline uint32_t decode_cp(const uint8_t *s, size_t i, size_t *len) {
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    if (b < 0xE0) {
        *len = 2;
        return ((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F);
    }
    if (b < 0xF0) {
        *len = 3;
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) | ((uint32_t)(s[i + 2] & 0x3F) << 6) |
           (s[i + 3] & 0x3F);
}

/* The class of the code point at s[i] (its UTF-8 length in *len). Bytes below 0x80 index the
   first 128 entries of cls directly: a byte-class table for ASCII, read from the same pinned ranges. */
static inline int class_at(const uint8_t *cls, const uint8_t *s, size_t i, size_t *len) {
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return cls[b];
    }
    return cls[decode_cp(s, i, len)];
}

/* End of the run of class k starting at i: ASCII bytes in a tight loop, other code points decoded. */
static inline size_t run_end(const uint8_t *cls, const uint8_t *s, size_t i, size_t n, int k) {
    for (;;) {
        while (i < n && s[i] < 0x80 && cls[s[i]] == k) i++;
        if (i >= n || s[i] < 0x80) return i;
        size_t l;
        if (cls[decode_cp(s, i, &l)] != k) return i;
        i += l;
    }
}

/* End of the GPT-2 pre-token that starts at s[i] (s[0..n) valid UTF-8): the pattern
   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ matched by hand. */
static inline size_t next_piece(const uint8_t *cls, const uint8_t *s, size_t i, size_t n) {
    size_t l0;
    uint8_t b0 = s[i];
    if (b0 == '\'' && i + 1 < n) { /* '(?:[sdmt]|ll|ve|re) */
        uint8_t b1 = s[i + 1];
        if (b1 == 's' || b1 == 'd' || b1 == 'm' || b1 == 't') return i + 2;
        if (i + 2 < n) {
            uint8_t b2 = s[i + 2];
            if ((b1 == 'l' && b2 == 'l') || (b1 == 'v' && b2 == 'e') || (b1 == 'r' && b2 == 'e')) return i + 3;
        }
    }
    int k0 = class_at(cls, s, i, &l0);
    if (b0 == ' ' && i + 1 < n) { /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the space */
        size_t l1;
        int k1 = class_at(cls, s, i + 1, &l1);
        if (k1 != K_SPACE) return run_end(cls, s, i + 1 + l1, n, k1);
    }
    if (k0 != K_SPACE) return run_end(cls, s, i + l0, n, k0); /* the same without the space */
    /* \s+(?!\S) | \s+ : the run, less its last character when a non-space follows a run of 2+ */
    size_t j = i + l0, last = i;
    while (j < n) {
        size_t l;
        if (class_at(cls, s, j, &l) != K_SPACE) break;
        last = j;
        j += l;
    }
    return (j == n || last == i) ? j : last;
}

/* ------------------------------------------------------------------------------------------ */
/* The same pre-tokens 64 bytes at a time (ASCII)                                              */
/*
 * In ASCII text every GPT-2 pre-token boundary but those of contractions is decided by the
 * classes of three bytes: the one before, the one at, the one after. With S the white-space
 * bytes, NS the others, a boundary (a pre-token start) is at i when
 *   (a) S[i] and not S[i-1]                      a white-space run starts;
 *   (b) S[i], S[i-1] and NS[i+1]                 a run of 2+ white-space characters followed
 *                                                 by a non-space leaves its last one (\s+(?!\S));
 *   (c) NS[i], S[i-1] and byte i-1 is not ' '    after other white space (" ?" takes only ' ',
 *                                                 which otherwise starts the piece, by (a) or (b));
 *   (d) NS[i], NS[i-1] and classes differ        letter / number / other runs.
 * A contraction ('s 't 'm 'd 'll 've 're) is taken where a boundary falls on an apostrophe: it
 * ends the piece after 2 or 3 bytes, the rest of the letter run starts the next. Each block of
 * 64 bytes is classified into bit masks (SSE2 where available), the boundaries are computed as
 * above for all 64 bytes at once, then read off with count-trailing-zeros: no branch per byte.
 * A block starts at a known pre-token start (bit 0), and the next block starts where the last
 * pre-token found in it starts (its end is not known yet); a block holding a non-ASCII byte is
 * cut before it, and a pre-token that no block can end (non-ASCII, or longer than 63 bytes) is
 * found by next_piece. Used only when the ASCII classes are the standard ones (ascii_std).
 */

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define HAVE_SSE2 1
#endif

typedef struct {
    uint64_t L, N, S, SP, AP, HI; /* letter, number, white space, ' ', apostrophe, byte >= 0x80 */
} ByteMasks;

/* The index of the lowest set bit of x != 0. */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline size_t ctz64(uint64_t x) {
    unsigned long i;
    _BitScanForward64(&i, x);
    return (size_t)i;
}
#else
static inline size_t ctz64(uint64_t x) { return (size_t)__builtin_ctzll(x); }
#endif

/* Classes of the m <= 64 bytes at p (bit j: byte j), from the table (reference and tail path). */
static inline void classify_table(const uint8_t *cls, const uint8_t *p, size_t m, ByteMasks *b) {
    ByteMasks r = {0, 0, 0, 0, 0, 0};
    for (size_t j = 0; j < m; j++) {
        uint8_t c = p[j];
        uint64_t bit = (uint64_t)1 << j;
        if (c >= 0x80) {
            r.HI |= bit;
            continue;
        }
        int k = cls[c];
        if (k == K_LETTER) r.L |= bit;
        else if (k == K_NUMBER) r.N |= bit;
        else if (k == K_SPACE) r.S |= bit;
        if (c == ' ') r.SP |= bit;
        if (c == '\'') r.AP |= bit;
    }
    *b = r;
}

#ifdef HAVE_SSE2
static inline uint64_t movemask16(__m128i v, int k) { return (uint64_t)(uint32_t)_mm_movemask_epi8(v) << (16 * k); }

/* Classes of the 64 bytes at p, for the standard ASCII classes: letters A-Z a-z, numbers 0-9,
   white space \t \n \v \f \r and ' ' (signed compares: bytes >= 0x80 fall in no class). */
static inline void classify_sse2(const uint8_t *p, ByteMasks *b) {
    ByteMasks r = {0, 0, 0, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * k));
        __m128i lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
        __m128i isl = _mm_and_si128(_mm_cmpgt_epi8(lower, _mm_set1_epi8('a' - 1)), _mm_cmplt_epi8(lower, _mm_set1_epi8('z' + 1)));
        __m128i isn = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)), _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
        __m128i isp = _mm_cmpeq_epi8(v, _mm_set1_epi8(' '));
        __m128i iss = _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(8)), _mm_cmplt_epi8(v, _mm_set1_epi8(14))), isp);
        r.L |= movemask16(isl, k);
        r.N |= movemask16(isn, k);
        r.S |= movemask16(iss, k);
        r.SP |= movemask16(isp, k);
        r.AP |= movemask16(_mm_cmpeq_epi8(v, _mm_set1_epi8('\'')), k);
        r.HI |= movemask16(v, k);
    }
    *b = r;
}
#endif

/* Whether the first 128 classes are the standard ASCII ones classify_sse2 assumes. */
static int ascii_classes_standard(const uint8_t *cls) {
    for (int c = 0; c < 128; c++) {
        int want = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) ? K_LETTER
                   : (c >= '0' && c <= '9')                           ? K_NUMBER
                   : ((c >= 9 && c <= 13) || c == ' ')                ? K_SPACE
                                                                      : K_OTHER;
        if (cls[c] != want) return 0;
    }
    return 1;
}

/* Length of the contraction starting at the apostrophe s[i] ('s 't 'm 'd: 2; 'll 've 're: 3), or 0. */
static inline size_t contraction_at(const uint8_t *s, size_t i, size_t n) {
    if (i + 1 >= n) return 0;
    uint8_t b1 = s[i + 1];
    if (b1 == 's' || b1 == 'd' || b1 == 'm' || b1 == 't') return 2;
    if (i + 2 >= n) return 0;
    uint8_t b2 = s[i + 2];
    return ((b1 == 'l' && b2 == 'l') || (b1 == 'v' && b2 == 'e') || (b1 == 'r' && b2 == 'e')) ? 3 : 0;
}

/* Appends to ends[] the ends of successive pre-tokens of s[0..n), the first starting at *pos (a
   pre-token start), and moves *pos to the end of the last one; at most cap ends (cap >= 64),
   returns how many (0 only when *pos == n). */
static size_t scan_pieces(const Encoder *e, const uint8_t *s, size_t n, size_t *pos, size_t *ends, size_t cap) {
    size_t k = 0, base = *pos;
    while (base < n && k + 64 <= cap) {
        size_t m = n - base < 64 ? n - base : 64;
        ByteMasks b;
        if (!e->ascii_std) {
            b.HI = 1; /* no fast path: next_piece below */
        } else {
#ifdef HAVE_SSE2
            if (m == 64) classify_sse2(s + base, &b);
            else
#endif
                classify_table(e->cls, s + base, m, &b);
        }
        if (b.HI & 1) { /* a non-ASCII start: this pre-token the scalar way */
            base = ends[k++] = next_piece(e->cls, s, base, n);
            continue;
        }
        if (b.HI) m = ctz64(b.HI); /* only the ASCII bytes before it */
        uint64_t valid = m == 64 ? ~(uint64_t)0 : (((uint64_t)1 << m) - 1);
        int closed = base + m == n; /* the block reaches the end of the text */
        uint64_t next_ns = 0;       /* is the character after the block not white space? */
        if (!closed) {
            size_t l;
            next_ns = class_at(e->cls, s, base + m, &l) != K_SPACE;
        }
        uint64_t S = b.S & valid, NS = ~b.S & valid;
        uint64_t pS = S << 1, pNS = NS << 1, pSP = b.SP << 1;
        uint64_t nNS = (NS >> 1) | (next_ns << (m - 1));
        uint64_t B = (S & ~pS) | (S & pS & nNS) | (NS & pS & ~pSP) | (NS & pNS & ((b.L ^ (b.L << 1)) | (b.N ^ (b.N << 1))));
        B = (B | 1) & valid;
        size_t close_at = 0; /* a contraction that runs past the block closes it here */
        for (uint64_t A = b.AP & B; A; A &= A - 1) {
            size_t j = ctz64(A);
            if (!((B >> j) & 1)) continue;
            size_t c = contraction_at(s, base + j, n);
            if (!c) continue;
            if (j + 1 < 64) B &= ~((((uint64_t)1 << (c - 1)) - 1) << (j + 1)); /* its letters start nothing */
            if (j + c < m) {
                B |= (uint64_t)1 << (j + c);
            } else {
                B &= ((uint64_t)2 << j) - 1; /* nothing after it in this block */
                close_at = base + j + c;
                break;
            }
        }
        /* pre-tokens: from each set bit to the next; the last is open unless closed */
        uint64_t rest = B & (B - 1); /* starts after bit 0 = ends of the pre-tokens before them */
        while (rest) {
            ends[k++] = base + ctz64(rest);
            rest &= rest - 1;
        }
        if (close_at) {
            base = ends[k++] = close_at;
        } else if (closed) {
            base = ends[k++] = n;
        } else if (B == 1) { /* one pre-token fills the block: the scalar way */
            base = ends[k++] = next_piece(e->cls, s, base, n);
        } else {
            base = ends[k - 1];
        }
    }
    *pos = base;
    return k;
}

#define BATCH 256 /* pre-token ends found at a time (scan_pieces) */

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* Encodes s[0..n) (valid UTF-8) into o. 0, or -1 on memory error. Call with e->lock held.
   Pre-tokens are found BATCH at a time (scan_pieces); then, for the batch, the small-cache keys
   and home slots are computed and the slots' cache lines requested (prefetch), and only then
   looked up one by one: the lookups of a batch wait on memory together, not one after another. */
static int encode_core(Encoder *e, const uint8_t *s, size_t n, IdBuf *o) {
    if (small_ready(e) < 0) return -1;
    const uint8_t *end = s + n;
    size_t ends[BATCH];
    uint64_t keys[BATCH][2];
    uint32_t home[BATCH];
    size_t pos = 0;
    while (pos < n) {
        size_t start = pos, nb = scan_pieces(e, s, n, &pos, ends, BATCH);
        if (out_reserve(o, pos - start + SMALL_MAX_IDS) < 0) return -1;
        small_room(e, nb);
        for (size_t b = 0, at = start; b < nb; at = ends[b++]) {
            size_t len = ends[b] - at;
            if (len <= SMALL_MAX_KEY) {
                small_key(s + at, len, end, &keys[b][0], &keys[b][1]);
                home[b] = (uint32_t)small_slot(keys[b][0], keys[b][1], len, e->sbits);
                PREFETCH(&e->small[home[b]]);
            }
        }
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *p = s + start;
            size_t len = ends[b] - start, m;
            start = ends[b];
            if (len <= SMALL_MAX_KEY) { /* single bytes too: one path */
                if (encode_small(e, p, len, keys[b][0], keys[b][1], home[b], o) < 0) return -1;
            } else {
                const int32_t *ids = piece_ids(e, p, len, &m);
                if (!ids) return -1;
                out_put(o, ids, m);
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Pre-token counting (BPE training)                                                           */

static int count_grow(Encoder *e) {
    size_t ncap = e->cmask ? (e->cmask + 1) * 2 : 1 << 14;
    uint32_t *ns = (uint32_t *)calloc(ncap, sizeof(uint32_t));
    if (!ns) return -1;
    for (size_t k = 0; k < e->ncent; k++) {
        size_t h = (size_t)e->centries[k].hash & (ncap - 1);
        while (ns[h]) h = (h + 1) & (ncap - 1);
        ns[h] = (uint32_t)(k + 1);
    }
    free(e->cslots);
    e->cslots = ns;
    e->cmask = ncap - 1;
    return 0;
}

/* counts[p[0..len)] += add in the general table. 0, or -1 on memory error. Call with e->lock held. */
static int count_add(Encoder *e, const uint8_t *p, size_t len, int64_t add) {
    if (e->ncent + 1 >= UINT32_MAX) return -1; /* slots hold index + 1 in 32 bits */
    if ((e->ncent + 1) * 2 > e->cmask + 1 || !e->cslots) {
        if (count_grow(e) < 0) return -1;
    }
    uint64_t h = hash_bytes(p, len);
    size_t slot = (size_t)h & e->cmask;
    for (;;) {
        uint32_t idx = e->cslots[slot];
        if (!idx) break;
        CountEntry *c = &e->centries[idx - 1];
        if (c->hash == h && c->len == len && memcmp(e->ckeys + c->off, p, len) == 0) {
            c->count += add;
            return 0;
        }
        slot = (slot + 1) & e->cmask;
    }
    if (e->ncent == e->ccent) {
        size_t nc = e->ccent ? e->ccent * 2 : 1 << 13;
        CountEntry *ne = (CountEntry *)realloc(e->centries, nc * sizeof(CountEntry));
        if (!ne) return -1;
        e->centries = ne;
        e->ccent = nc;
    }
    if (e->nckeys + len > e->cckeys) {
        size_t nc = e->cckeys ? e->cckeys * 2 : 1 << 16;
        while (nc < e->nckeys + len) nc *= 2;
        uint8_t *nk = (uint8_t *)realloc(e->ckeys, nc);
        if (!nk) return -1;
        e->ckeys = nk;
        e->cckeys = nc;
    }
    memcpy(e->ckeys + e->nckeys, p, len);
    CountEntry *c = &e->centries[e->ncent];
    c->hash = h;
    c->count = add;
    c->off = e->nckeys;
    c->len = len;
    e->nckeys += len;
    e->cslots[slot] = (uint32_t)(++e->ncent);
    return 0;
}

/* The short-count slot of key k0, k1 of length len in a table of mask + 1 slots. */
static inline size_t scount_slot(uint64_t k0, uint64_t k1, size_t len, size_t mask) {
    uint64_t h = (k0 * 0x9E3779B97F4A7C15ULL) ^ (k1 * 0xC2B2AE3D27D4EB4FULL) ^ (uint64_t)len;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    return (size_t)(h >> 32) & mask;
}

/* Doubles the short-count table (or makes its first one). 0, or -1 on memory error. */
static int scount_grow(Encoder *e) {
    size_t ncap = e->scounts ? (e->scmask + 1) * 2 : (size_t)1 << SCOUNT_MIN_BITS;
    ShortCount *nt = (ShortCount *)table_alloc(ncap * sizeof(ShortCount));
    if (!nt) return -1;
    if (e->scounts) {
        for (size_t k = 0; k <= e->scmask; k++) {
            const ShortCount *c = &e->scounts[k];
            if (!c->len) continue;
            size_t h = scount_slot(c->k0, c->k1, (size_t)c->len, ncap - 1);
            while (nt[h].len) h = (h + 1) & (ncap - 1);
            nt[h] = *c;
        }
        table_free(e->scounts, (e->scmask + 1) * sizeof(ShortCount));
    }
    e->scounts = nt;
    e->scmask = ncap - 1;
    return 0;
}

/* counts[key] += add for the pre-token of len <= 16 bytes whose key (small_key) is k0, k1.
   0, or -1 on memory error. Call with e->lock held. */
static inline int scount_add(Encoder *e, uint64_t k0, uint64_t k1, size_t len, int64_t add) {
    if (!e->scounts || (e->nscount + 1) * 2 > e->scmask + 1) {
        if (scount_grow(e) < 0) return -1;
    }
    ShortCount *t = e->scounts;
    for (size_t h = scount_slot(k0, k1, len, e->scmask);; h = (h + 1) & e->scmask) {
        if (t[h].len == len && t[h].k0 == k0 && t[h].k1 == k1) {
            t[h].count += add;
            return 0;
        }
        if (!t[h].len) {
            t[h].k0 = k0;
            t[h].k1 = k1;
            t[h].len = len;
            t[h].count = add;
            e->nscount++;
            return 0;
        }
    }
}

/* counts[p[0..len)] += add (end: end of the readable bytes). 0, or -1 on memory error. Call with
   e->lock held. */
static inline int count_add_any(Encoder *e, const uint8_t *p, size_t len, const uint8_t *end, int64_t add) {
    if (len > SMALL_MAX_KEY) return count_add(e, p, len, add);
    uint64_t k0, k1;
    small_key(p, len, end, &k0, &k1);
    return scount_add(e, k0, k1, len, add);
}

/* counts[p[0..len)] += 1 (end: end of the readable text). 0, or -1 on memory error. */
static int count_piece(Encoder *e, const uint8_t *p, size_t len, const uint8_t *end) {
    return count_add_any(e, p, len, end, 1);
}

/* The key bytes of short-count entry c (len of them) into buf[16]. */
static inline void scount_key(const ShortCount *c, uint8_t *buf) {
    memcpy(buf, &c->k0, 8);
    memcpy(buf + 8, &c->k1, 8);
}

static void count_reset(Encoder *e) {
    if (e->scounts) table_free(e->scounts, (e->scmask + 1) * sizeof(ShortCount));
    e->scounts = NULL;
    e->scmask = e->nscount = 0;
    free(e->centries);
    free(e->cslots);
    free(e->ckeys);
    e->centries = NULL;
    e->cslots = NULL;
    e->ckeys = NULL;
    e->ncent = e->ccent = e->cmask = e->nckeys = e->cckeys = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Python type                                                                                */

static void Encoder_dealloc(Encoder *e) {
    free(e->cls);
    if (e->mslots) table_free(e->mslots, (e->mmask + 1) * sizeof(MergeSlot));
    free(e->bytepairs);
    if (e->idobj) {
        for (int32_t i = 0; i < e->nidobj; i++) Py_XDECREF(e->idobj[i]);
        free(e->idobj);
    }
    table_free(e->slots, CACHE_SLOTS * sizeof(uint64_t));
    if (e->small) table_free(e->small, small_slots(e) * sizeof(SmallEntry));
    free(e->arena);
    free(e->work_ids);
    free(e->work_ranks);
    free(e->work_merged);
    count_reset(e);
    if (e->lock) PyThread_free_lock(e->lock);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int as_id(PyObject *o, const char *what, Py_ssize_t idx, int32_t *out) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v >= INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s[%zd]: id %ld out of range", what, idx, v);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static int fill_class(uint8_t *cls, PyObject *ranges, int k, const char *what) {
    PyObject *seq = PySequence_Fast(ranges, "ranges must be a sequence of (start, end) pairs");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        long a, b;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ll", &a, &b)) {
            Py_DECREF(seq);
            return -1;
        }
        if (a < 0 || b > NCODEPOINTS || a > b) {
            PyErr_Format(PyExc_ValueError, "%s[%zd]: bad code point range (%ld, %ld)", what, i, a, b);
            Py_DECREF(seq);
            return -1;
        }
        memset(cls + a, k, (size_t)(b - a));
    }
    Py_DECREF(seq);
    return 0;
}

static int Encoder_init(Encoder *e, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"byte_ids", "merges", "letter_ranges", "number_ranges", "space_ranges", NULL};
    PyObject *byte_ids, *merges, *letters, *numbers, *spaces;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO:Encoder", kwlist, &byte_ids, &merges, &letters, &numbers,
                                     &spaces))
        return -1;
    if (e->cls) {
        PyErr_SetString(PyExc_RuntimeError, "Encoder is already initialized");
        return -1;
    }
    int32_t max_id = 0;

    PyObject *bseq = PySequence_Fast(byte_ids, "byte_ids must be a sequence of 256 ints");
    if (!bseq) return -1;
    if (PySequence_Fast_GET_SIZE(bseq) != 256) {
        PyErr_SetString(PyExc_ValueError, "byte_ids must hold 256 ids");
        Py_DECREF(bseq);
        return -1;
    }
    for (Py_ssize_t i = 0; i < 256; i++) {
        if (as_id(PySequence_Fast_GET_ITEM(bseq, i), "byte_ids", i, &e->byte_ids[i]) < 0) {
            Py_DECREF(bseq);
            return -1;
        }
        if (e->byte_ids[i] > max_id) max_id = e->byte_ids[i];
    }
    Py_DECREF(bseq);

    e->cls = (uint8_t *)calloc(NCODEPOINTS, 1);
    if (!e->cls) goto nomem;
    if (fill_class(e->cls, letters, K_LETTER, "letter_ranges") < 0) return -1;
    if (fill_class(e->cls, numbers, K_NUMBER, "number_ranges") < 0) return -1;
    if (fill_class(e->cls, spaces, K_SPACE, "space_ranges") < 0) return -1;
    e->ascii_std = ascii_classes_standard(e->cls);

    PyObject *mseq = PySequence_Fast(merges, "merges must be a sequence of (left, right, merged) ids");
    if (!mseq) return -1;
    Py_ssize_t nm = PySequence_Fast_GET_SIZE(mseq);
    if (nm >= INT32_MAX / 4) {
        PyErr_SetString(PyExc_OverflowError, "too many merges");
        Py_DECREF(mseq);
        return -1;
    }
    e->nmerges = (int32_t)nm;
    uint64_t cap = 1024;
    while (cap < (uint64_t)nm * 2 + 1) cap *= 2;
    e->mmask = cap - 1;
    e->mshift = 64;
    for (uint64_t c = cap; c > 1; c >>= 1) e->mshift--;
    e->mslots = (MergeSlot *)table_alloc(cap * sizeof(MergeSlot));
    e->bytepairs = (PairRank *)malloc(65536 * sizeof(PairRank));
    if (!e->mslots || !e->bytepairs) {
        Py_DECREF(mseq);
        goto nomem;
    }
    for (uint64_t h = 0; h < cap; h++) e->mslots[h].key = UINT64_MAX;
    for (Py_ssize_t r = 0; r < nm; r++) {
        PyObject *t = PySequence_Fast_GET_ITEM(mseq, r);
        PyObject *ta = NULL, *tb = NULL, *tc = NULL;
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
            PyErr_Format(PyExc_TypeError, "merges[%zd] must be a (left, right, merged) tuple", r);
            Py_DECREF(mseq);
            return -1;
        }
        ta = PyTuple_GET_ITEM(t, 0);
        tb = PyTuple_GET_ITEM(t, 1);
        tc = PyTuple_GET_ITEM(t, 2);
        int32_t a, b, c;
        if (as_id(ta, "merges", r, &a) < 0 || as_id(tb, "merges", r, &b) < 0 || as_id(tc, "merges", r, &c) < 0) {
            Py_DECREF(mseq);
            return -1;
        }
        if (c > max_id) max_id = c;
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        uint64_t h = merge_slot(key, e->mshift);
        while (e->mslots[h].key != UINT64_MAX && e->mslots[h].key != key) h = (h + 1) & e->mmask;
        if (e->mslots[h].key == UINT64_MAX) { /* first rank wins */
            e->mslots[h].key = key;
            e->mslots[h].rank = (int32_t)r;
            e->mslots[h].merged = c;
        }
    }
    Py_DECREF(mseq);
    for (size_t xy = 0; xy < 65536; xy++) {
        PairRank *pr = &e->bytepairs[xy];
        pr->merged = -1;
        pr->rank = merge_rank(e, e->byte_ids[xy >> 8], e->byte_ids[xy & 0xFF], &pr->merged);
    }

    e->nidobj = max_id < IDOBJ_LIMIT ? max_id + 1 : IDOBJ_LIMIT;
    e->idobj = (PyObject **)calloc((size_t)e->nidobj, sizeof(PyObject *));
    if (!e->idobj) goto nomem;
    for (int32_t i = 0; i < e->nidobj; i++) {
        e->idobj[i] = PyLong_FromLong(i);
        if (!e->idobj[i]) return -1;
    }

    e->slots = (uint64_t *)table_alloc(CACHE_SLOTS * sizeof(uint64_t));
    if (!e->slots) goto nomem;
    e->lock = PyThread_allocate_lock();
    if (!e->lock) goto nomem;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* 0 when the Encoder was initialised (tp_init ran), else -1 with RuntimeError set. */
static int encoder_ready(const Encoder *e) {
    if (e->cls && e->lock) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Encoder is not initialized");
    return -1;
}

/* text (str) as UTF-8, borrowed from text: ASCII text is its own UTF-8; otherwise a UTF-8 copy,
   made on first use and kept with the str exactly as PyUnicode_AsUTF8AndSize keeps it (as PyO3
   and tiktoken read text), so encoding one str twice converts it once; made 16 code units at a
   time (str_utf8, _str_utf8.h). UnicodeEncodeError on lone surrogates. */
static int text_utf8(PyObject *text, const char *caller, const uint8_t **s, size_t *n) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s expects str, got %.100s", caller, Py_TYPE(text)->tp_name);
        return -1;
    }
    Py_ssize_t size;
    const char *utf8;
    if (str_utf8(text, &utf8, &size) < 0) return -1;
    *s = (const uint8_t *)utf8;
    *n = (size_t)size;
    return 0;
}

/* A special token to cut the text at: its UTF-8 bytes, its id, and the start of its next
   occurrence at or after the current position (n when none is left). */
typedef struct {
    const uint8_t *tok;
    size_t len;
    int32_t id;
    size_t next;
} Special;

/* The start of the first occurrence of sp's bytes in s[from..n), or n. */
static size_t find_special(const uint8_t *s, size_t n, size_t from, const Special *sp) {
    while (from + sp->len <= n) {
        const uint8_t *hit = (const uint8_t *)memchr(s + from, sp->tok[0], n - from - sp->len + 1);
        if (!hit) return n;
        size_t at = (size_t)(hit - s);
        if (memcmp(hit + 1, sp->tok + 1, sp->len - 1) == 0) return at;
        from = at + 1;
    }
    return n;
}

/* Starts the search for specials at the start of s[0..n). */
static void find_specials(const uint8_t *s, size_t n, Special *sp, size_t nsp) {
    for (size_t k = 0; k < nsp; k++) sp[k].next = find_special(s, n, 0, &sp[k]);
}

/* The start of the next special-token occurrence to take (n when none is left): the leftmost,
   and of those starting there the longest (as SpecialTokenMatcher); its index in *which. */
static size_t next_special(const Special *sp, size_t nsp, size_t n, size_t *which) {
    size_t best = n, bk = nsp;
    for (size_t k = 0; k < nsp; k++)
        if (sp[k].next < best || (sp[k].next == best && best < n && sp[k].len > sp[bk].len)) {
            best = sp[k].next;
            bk = k;
        }
    *which = bk;
    return best;
}

/* After taking an occurrence that ends at pos: finds the next occurrence of each special whose
   last one started before pos (overlapping it, or taken). */
static void skip_specials(const uint8_t *s, size_t n, Special *sp, size_t nsp, size_t pos) {
    for (size_t k = 0; k < nsp; k++)
        if (sp[k].next < pos) sp[k].next = find_special(s, n, pos, &sp[k]);
}

/* Counts the pre-tokens of s[0..n) (valid UTF-8). 0, or -1 on memory error. Call with e->lock held. */
static int count_core(Encoder *e, const uint8_t *s, size_t n) {
    size_t ends[BATCH], pos = 0;
    while (pos < n) {
        size_t start = pos, nb = scan_pieces(e, s, n, &pos, ends, BATCH);
        for (size_t b = 0; b < nb; b++) {
            if (count_piece(e, s + start, ends[b] - start, s + n) < 0) return -1;
            start = ends[b];
        }
    }
    return 0;
}

/* Encodes s[0..n) (valid UTF-8) into o, each occurrence of a special token as its id, or, when o
   is NULL, counts its pre-tokens, the special tokens dropped; the text between special tokens is
   ordinary text either way. 0, or -1 on memory error. Call with e->lock held. */
static int process_segments(Encoder *e, const uint8_t *s, size_t n, Special *sp, size_t nsp, IdBuf *o) {
    size_t pos = 0, which, at;
    find_specials(s, n, sp, nsp);
    while ((at = next_special(sp, nsp, n, &which)) < n) {
        if (o) {
            if (encode_core(e, s + pos, at - pos, o) < 0 || out_reserve(o, 1) < 0) return -1;
            out_put(o, &sp[which].id, 1);
        } else if (count_core(e, s + pos, at - pos) < 0) {
            return -1;
        }
        pos = at + sp[which].len;
        skip_specials(s, n, sp, nsp, pos);
    }
    return o ? encode_core(e, s + pos, n - pos, o) : count_core(e, s + pos, n - pos);
}

/* Reads specials, a sequence of (bytes, id) pairs, into a new array (*out, count in *count; the
   bytes stay owned by the returned sequence, which the caller releases). NULL with an error set. */
static PyObject *read_specials(PyObject *specials, Special **out, size_t *count) {
    *out = NULL;
    *count = 0;
    PyObject *seq = PySequence_Fast(specials, "specials must be a sequence of (bytes, id) pairs");
    if (!seq) return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    if (m == 0) return seq;
    Special *sp = (Special *)calloc((size_t)m, sizeof(Special));
    if (!sp) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t k = 0; k < m; k++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 0)) ||
            PyBytes_GET_SIZE(PyTuple_GET_ITEM(pair, 0)) == 0) {
            PyErr_Format(PyExc_TypeError, "specials[%zd] must be a (non-empty bytes, id) pair", k);
            goto fail;
        }
        PyObject *tok = PyTuple_GET_ITEM(pair, 0);
        sp[k].tok = (const uint8_t *)PyBytes_AS_STRING(tok);
        sp[k].len = (size_t)PyBytes_GET_SIZE(tok);
        if (as_id(PyTuple_GET_ITEM(pair, 1), "specials", k, &sp[k].id) < 0) goto fail;
    }
    *out = sp;
    *count = (size_t)m;
    return seq;
fail:
    free(sp);
    Py_DECREF(seq);
    return NULL;
}

/* Whether s[0..n) is well-formed UTF-8 as Python's strict decoder takes it (Unicode's Table 3-7:
   no overlong forms, no surrogates, nothing past U+10FFFF, no truncated sequence). */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) { /* eight ASCII bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
        if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b == 0xE0) need = 2, lo = 0xA0;
        else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
        else if (b == 0xED) need = 2, hi = 0x9F;
        else if (b == 0xF0) need = 3, lo = 0x90;
        else if (b >= 0xF1 && b <= 0xF3) need = 3;
        else if (b == 0xF4) need = 3, hi = 0x8F;
        else return 0;
        if (i + need >= n) return 0; /* truncated: fewer than need bytes follow */
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += need + 1;
    }
    return 1;
}

/* One call's input: the UTF-8 bytes s[0..n) of a str or of a bytes-like object, and the special
   tokens to cut them at. */
typedef struct {
    const uint8_t *s;
    size_t n;
    Py_buffer view; /* the bytes-like object's buffer, held while view.obj is set */
    PyObject *held; /* keeps the special tokens' bytes alive */
    Special *sp;
    size_t nsp;
} Input;

static void input_close(Input *in) {
    if (in->view.obj) PyBuffer_Release(&in->view);
    Py_XDECREF(in->held);
    free(in->sp);
}

/* Opens data (a str when is_text, else a bytes-like object, taken as it is) and specials, a
   sequence of (bytes, id) pairs (NULL or None: none). 0, or -1 with an error set and nothing held. */
static int input_open(Input *in, PyObject *data, int is_text, PyObject *specials, const char *caller) {
    memset(in, 0, sizeof *in);
    if (specials && specials != Py_None && !(in->held = read_specials(specials, &in->sp, &in->nsp))) return -1;
    int rc;
    if (is_text) {
        rc = text_utf8(data, caller, &in->s, &in->n);
    } else if ((rc = PyObject_GetBuffer(data, &in->view, PyBUF_SIMPLE)) == 0) {
        in->s = (const uint8_t *)in->view.buf;
        in->n = (size_t)in->view.len;
    }
    if (rc < 0) input_close(in);
    return rc;
}

/* Encodes in into o (or counts it, o NULL: process_segments) without the GIL, under e->lock;
   bytes-like input is first checked to be UTF-8 as Python's strict decoder takes it (*valid: 0,
   and nothing done, when it is not). 0, or -1 on memory error. */
static int input_process(Encoder *e, Input *in, IdBuf *o, int *valid) {
    int rc = 0, ok;
    Py_BEGIN_ALLOW_THREADS
    ok = !in->view.obj || utf8_valid(in->s, in->n);
    if (ok && o) rc = out_reserve(o, in->n / 3 + 16);
    if (ok && rc == 0) {
        PyThread_acquire_lock(e->lock, WAIT_LOCK);
        if (o) small_expect(e, in->n);
        rc = process_segments(e, in->s, in->n, in->sp, in->nsp, o);
        PyThread_release_lock(e->lock);
    }
    Py_END_ALLOW_THREADS
    *valid = ok;
    return rc;
}

/* The ids (o->itemsize 4) as a list of Python ints (shared objects below IDOBJ_LIMIT). */
static PyObject *ids_list(Encoder *e, const IdBuf *o) {
    PyObject *list = PyList_New((Py_ssize_t)o->n);
    if (!list) return NULL;
    const int32_t *v = (const int32_t *)(const void *)o->v;
    for (size_t k = 0; k < o->n; k++) {
        int32_t id = v[k];
        PyObject *obj;
        if (id < e->nidobj) {
            obj = e->idobj[id];
            Py_INCREF(obj);
        } else if (!(obj = PyLong_FromLong(id))) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)k, obj);
    }
    return list;
}

/* PackedIds: a writable buffer that owns the malloc'd memory the ids were encoded into, so packed
   output is handed over without a copy. Only the buffer protocol and len (bytes): read it with
   numpy.frombuffer(x, dtype) or bytes(x) (bytes(x) == b"..."; x itself has no == of its own). */
typedef struct {
    PyObject_HEAD
    uint8_t *buf;
    Py_ssize_t len;
} PackedIds;

static void PackedIds_dealloc(PackedIds *p) {
    free(p->buf);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int PackedIds_getbuffer(PackedIds *p, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)p, p->buf, p->len, 0, flags);
}

static Py_ssize_t PackedIds_length(PackedIds *p) { return p->len; }

static PyBufferProcs PackedIds_as_buffer = {(getbufferproc)PackedIds_getbuffer, NULL};
static PySequenceMethods PackedIds_as_sequence = {.sq_length = (lenfunc)PackedIds_length};

static PyTypeObject PackedIdsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm.tokenizer._bpe_encode.PackedIds",
    .tp_basicsize = sizeof(PackedIds),
    .tp_dealloc = (destructor)PackedIds_dealloc,
    .tp_as_buffer = &PackedIds_as_buffer,
    .tp_as_sequence = &PackedIds_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Packed little-endian token ids (len: bytes); read with numpy.frombuffer(x, dtype).",
};

/* The packed ids of o (itemsize 2 or 4) as a PackedIds that takes o's memory (o is emptied);
   OverflowError when a uint16 id did not fit. */
static PyObject *ids_packed(IdBuf *o) {
    if (o->itemsize == 2 && o->top > 0xFFFF) {
        PyErr_SetString(PyExc_OverflowError, "an id past 65535 does not fit in uint16");
        return NULL;
    }
#if !WORD_LOADS /* big-endian: the native layout is not the file's */
    for (size_t k = 0; k < o->n; k++) {
        uint8_t *q = o->v + o->itemsize * k;
        for (size_t i = 0, j = o->itemsize - 1; i < j; i++, j--) {
            uint8_t t = q[i];
            q[i] = q[j];
            q[j] = t;
        }
    }
#endif
    PackedIds *p = PyObject_New(PackedIds, &PackedIdsType);
    if (!p) return NULL;
    size_t len = o->n * o->itemsize;
    if (len) { /* give back the unused capacity (in place: no copy) */
        uint8_t *q = (uint8_t *)realloc(o->v, len);
        if (q) o->v = q;
    } else {
        free(o->v);
        o->v = NULL;
    }
    p->buf = o->v;
    p->len = (Py_ssize_t)len;
    o->v = NULL;
    o->n = o->cap = 0;
    return (PyObject *)p;
}

/* Encodes data (a str when is_text, else UTF-8 bytes) cut at specials; the ids as a list
   (itemsize 0) or packed (2, 4: a PackedIds); None when bytes-like data is not UTF-8 (nothing
   encoded). */
static PyObject *encode_to(Encoder *e, PyObject *data, int is_text, PyObject *specials, int itemsize, const char *caller) {
    if (itemsize != 0 && itemsize != 2 && itemsize != 4) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be 0 (list), 2 (uint16) or 4 (uint32)");
        return NULL;
    }
    Input in;
    if (encoder_ready(e) < 0 || input_open(&in, data, is_text, specials, caller) < 0) return NULL;
    IdBuf o = {NULL, 0, 0, itemsize == 2 ? 2 : 4, 0};
    int valid;
    int rc = input_process(e, &in, &o, &valid);
    input_close(&in);
    PyObject *out = NULL;
    if (rc < 0) {
        PyErr_NoMemory();
    } else if (!valid) {
        Py_INCREF(Py_None);
        out = Py_None;
    } else {
        out = itemsize ? ids_packed(&o) : ids_list(e, &o);
    }
    free(o.v);
    return out;
}

static PyObject *Encoder_encode_ordinary(Encoder *e, PyObject *text) { return encode_to(e, text, 1, NULL, 0, "encode_ordinary"); }

static PyObject *Encoder_encode_ordinary_bytes(Encoder *e, PyObject *args) {
    PyObject *text;
    int itemsize;
    if (!PyArg_ParseTuple(args, "Oi:encode_ordinary_bytes", &text, &itemsize)) return NULL;
    if (itemsize == 0) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be 2 (uint16) or 4 (uint32)");
        return NULL;
    }
    return encode_to(e, text, 1, NULL, itemsize, "encode_ordinary_bytes");
}

static PyObject *Encoder_encode(Encoder *e, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"text", "specials", "itemsize", NULL};
    PyObject *text, *specials = NULL;
    int itemsize = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Oi:encode", kwlist, &text, &specials, &itemsize)) return NULL;
    return encode_to(e, text, 1, specials, itemsize, "encode");
}

/* encode for UTF-8 bytes: None, with nothing encoded, when data is not well-formed UTF-8 (the
   caller decodes it to get Python's error). */
static PyObject *Encoder_encode_utf8(Encoder *e, PyObject *args) {
    PyObject *data, *specials = NULL;
    int itemsize = 0;
    if (!PyArg_ParseTuple(args, "O|Oi:encode_utf8", &data, &specials, &itemsize)) return NULL;
    return encode_to(e, data, 0, specials, itemsize, "encode_utf8");
}

/* The UTF-8 byte offsets at which the pre-tokens of text end (scan_pieces), as a list. */
static PyObject *Encoder_pretoken_ends(Encoder *e, PyObject *text) {
    const uint8_t *s;
    size_t n;
    if (encoder_ready(e) < 0 || text_utf8(text, "pretoken_ends", &s, &n) < 0) return NULL;
    PyObject *list = PyList_New(0);
    size_t ends[BATCH], pos = 0;
    while (list && pos < n) {
        size_t m = scan_pieces(e, s, n, &pos, ends, BATCH);
        for (size_t j = 0; j < m; j++) {
            PyObject *v = PyLong_FromSize_t(ends[j]);
            if (!v || PyList_Append(list, v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(list);
                break;
            }
            Py_DECREF(v);
        }
    }
    return list;
}

/* Counts the pre-tokens of data (a str when is_text, else UTF-8 bytes) cut at specials. 0, or -1
   with an error set; *valid as input_process's. */
static int count_input(Encoder *e, PyObject *data, int is_text, PyObject *specials, const char *caller, int *valid) {
    Input in;
    if (encoder_ready(e) < 0 || input_open(&in, data, is_text, specials, caller) < 0) return -1;
    int rc = input_process(e, &in, NULL, valid);
    input_close(&in);
    if (rc < 0) PyErr_NoMemory();
    return rc;
}

static PyObject *Encoder_count_pretokens_utf8(Encoder *e, PyObject *args) {
    PyObject *data, *specials = NULL;
    int valid;
    if (!PyArg_ParseTuple(args, "O|O:count_pretokens_utf8", &data, &specials)) return NULL;
    if (count_input(e, data, 0, specials, "count_pretokens_utf8", &valid) < 0) return NULL;
    return PyBool_FromLong(valid);
}

static PyObject *Encoder_count_pretokens(Encoder *e, PyObject *text) {
    int valid;
    if (count_input(e, text, 1, NULL, "count_pretokens", &valid) < 0) return NULL;
    Py_RETURN_NONE;
}

/* d[bytes(key[0..len))] = count. 0, or -1 with a Python error set. */
static int dict_add_count(PyObject *d, const uint8_t *key, size_t len, int64_t count) {
    PyObject *k = PyBytes_FromStringAndSize((const char *)key, (Py_ssize_t)len);
    PyObject *v = k ? PyLong_FromLongLong(count) : NULL;
    int rc = (v && PyDict_SetItem(d, k, v) == 0) ? 0 : -1;
    Py_XDECREF(k);
    Py_XDECREF(v);
    return rc;
}

static PyObject *Encoder_take_counts(Encoder *e, PyObject *Py_UNUSED(ignored)) {
    if (encoder_ready(e) < 0) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    /* wait for the lock without the GIL (another thread may be counting), then build the dict with both */
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(e->lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
    int rc = 0;
    for (size_t k = 0; rc == 0 && e->scounts && k <= e->scmask; k++) {
        const ShortCount *c = &e->scounts[k];
        if (!c->len) continue;
        uint8_t buf[16];
        scount_key(c, buf);
        rc = dict_add_count(d, buf, (size_t)c->len, c->count);
    }
    for (size_t k = 0; rc == 0 && k < e->ncent; k++) {
        const CountEntry *c = &e->centries[k];
        rc = dict_add_count(d, e->ckeys + c->off, c->len, c->count);
    }
    if (rc < 0) {
        Py_DECREF(d);
        PyThread_release_lock(e->lock);
        return NULL;
    }
    count_reset(e);
    PyThread_release_lock(e->lock);
    return d;
}

/* take_counts as one bytes object: per pre-token [uint32 length][int64 count][the bytes], native
   byte order, in no particular order. Handing counts between processes this way costs one bytes
   object instead of a dict of bytes and ints (built, pickled, unpickled and merged per entry). */
static PyObject *Encoder_take_counts_packed(Encoder *e, PyObject *Py_UNUSED(ignored)) {
    if (encoder_ready(e) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(e->lock, WAIT_LOCK);
    Py_END_ALLOW_THREADS
    size_t total = 0;
    for (size_t k = 0; k < e->ncent; k++) total += 12 + e->centries[k].len;
    for (size_t k = 0; e->scounts && k <= e->scmask; k++)
        if (e->scounts[k].len) total += 12 + (size_t)e->scounts[k].len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!out) {
        count_reset(e);
        PyThread_release_lock(e->lock);
        return NULL;
    }
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    for (size_t k = 0; k < e->ncent; k++) {
        const CountEntry *c = &e->centries[k];
        uint32_t len = (uint32_t)c->len;
        int64_t count = c->count;
        memcpy(dst, &len, 4);
        memcpy(dst + 4, &count, 8);
        memcpy(dst + 12, e->ckeys + c->off, c->len);
        dst += 12 + c->len;
    }
    for (size_t k = 0; e->scounts && k <= e->scmask; k++) {
        const ShortCount *c = &e->scounts[k];
        if (!c->len) continue;
        uint32_t len = (uint32_t)c->len;
        uint8_t buf[16];
        scount_key(c, buf);
        memcpy(dst, &len, 4);
        memcpy(dst + 4, &c->count, 8);
        memcpy(dst + 12, buf, len);
        dst += 12 + len;
    }
    count_reset(e);
    PyThread_release_lock(e->lock);
    return out;
}

/* Adds counts packed by take_counts_packed (any Encoder's) to this Encoder's counts. */
static PyObject *Encoder_add_counts_packed(Encoder *e, PyObject *arg) {
    if (encoder_ready(e) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *p = (const uint8_t *)view.buf, *end = p + view.len;
    int rc = 0, bad = 0;
    for (const uint8_t *q = p; q < end;) { /* checked whole first: a bad buffer adds nothing */
        uint32_t len;
        if (end - q < 12) { bad = 1; break; }
        memcpy(&len, q, 4);
        if ((size_t)(end - q - 12) < len) { bad = 1; break; }
        q += 12 + len;
    }
    if (!bad) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(e->lock, WAIT_LOCK);
        while (p < end && rc == 0) {
            uint32_t len;
            int64_t count;
            memcpy(&len, p, 4);
            memcpy(&count, p + 4, 8);
            rc = count_add_any(e, p + 12, len, end, count);
            p += 12 + len;
        }
        PyThread_release_lock(e->lock);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "add_counts_packed: truncated or malformed packed counts");
        return NULL;
    }
    if (rc < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Encoder_reset_counts(Encoder *e, PyObject *Py_UNUSED(ignored)) {
    if (encoder_ready(e) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(e->lock, WAIT_LOCK);
    count_reset(e);
    PyThread_release_lock(e->lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *Encoder_clear_cache(Encoder *e, PyObject *Py_UNUSED(ignored)) {
    if (e->slots && e->lock) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(e->lock, WAIT_LOCK);
        cache_clear(e);
        small_clear(e);
        PyThread_release_lock(e->lock);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* The class (0 other, 1 letter, 2 number, 3 space) the matcher gives each code point of text. */
static PyObject *Encoder_classes(Encoder *e, PyObject *text) {
    if (encoder_ready(e) < 0) return NULL;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "classes expects str, got %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (!out) return NULL;
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = e->cls[PyUnicode_READ(kind, data, i)];
    return out;
}

static PyObject *Encoder_cache_size(Encoder *e, void *Py_UNUSED(closure)) {
    return PyLong_FromLong((long)e->ncache + (long)e->nsmall);
}

static PyObject *Encoder_small_cache_slots(Encoder *e, void *Py_UNUSED(closure)) {
    return PyLong_FromSize_t(e->small ? small_slots(e) : 0);
}

PyDoc_STRVAR(encode_ordinary_doc,
"encode_ordinary(text: str) -> list[int]\n"
"\n"
"GPT-2 pre-tokenization and BPE of text, special-token strings treated as plain text: the same\n"
"ids as the pure-Python Tokenizer.encode_ordinary. Raises UnicodeEncodeError when text holds\n"
"surrogates (the caller replaces them and retries).");

static PyMethodDef Encoder_methods[] = {
    {"encode_ordinary", (PyCFunction)Encoder_encode_ordinary, METH_O, encode_ordinary_doc},
    {"pretoken_ends", (PyCFunction)Encoder_pretoken_ends, METH_O,
     "pretoken_ends(text: str) -> list[int]\n\nWhere each GPT-2 pre-token of text ends, as offsets into its UTF-8 bytes "
     "(the matcher encode and count_pretokens use; for tests and debugging). UnicodeEncodeError on lone surrogates."},
    {"encode", (PyCFunction)(void (*)(void))Encoder_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text: str, specials=(), itemsize=0) -> list[int] | PackedIds\n\nencode_ordinary, except that each "
     "occurrence of a special token (specials: (UTF-8 bytes, id) pairs) becomes its id: leftmost first, the longest "
     "of those starting at one place. itemsize 0 gives a list of ints; 2 or 4 the ids as little-endian uint16 / "
     "uint32 in a PackedIds buffer (numpy.frombuffer; OverflowError if an id does not fit). UnicodeEncodeError on lone surrogates."},
    {"encode_ordinary_bytes", (PyCFunction)Encoder_encode_ordinary_bytes, METH_VARARGS,
     "encode_ordinary_bytes(text: str, itemsize: int) -> PackedIds\n\nThe ids of encode_ordinary(text) as little-endian "
     "unsigned integers of itemsize bytes (2: uint16, 4: uint32), e.g. for numpy.frombuffer; OverflowError if an id "
     "does not fit."},
    {"clear_cache", (PyCFunction)Encoder_clear_cache, METH_NOARGS, "Empty the pre-token cache."},
    {"classes", (PyCFunction)Encoder_classes, METH_O,
     "classes(text: str) -> bytes\n\nThe pre-tokenizer's class of each code point of text, one byte each: 0 other, "
     "1 letter (\\p{L}), 2 number (\\p{N}), 3 white space (\\s), as read from the ranges given to Encoder."},
    {"count_pretokens", (PyCFunction)Encoder_count_pretokens, METH_O,
     "count_pretokens(text: str) -> None\n\nSplit text with the GPT-2 pattern (no special-token handling) and add "
     "each pre-token's UTF-8 bytes to this Encoder's counts; UnicodeEncodeError on lone surrogates."},
    {"encode_utf8", (PyCFunction)Encoder_encode_utf8, METH_VARARGS,
     "encode_utf8(data: bytes-like, specials=(), itemsize=0) -> list[int] | PackedIds | None\n\nencode on UTF-8 "
     "bytes, with no str made; None, with nothing encoded, when data is not well-formed UTF-8 (decode it to get "
     "Python's error)."},
    {"count_pretokens_utf8", (PyCFunction)Encoder_count_pretokens_utf8, METH_VARARGS,
     "count_pretokens_utf8(data: bytes-like, specials=()) -> bool\n\ncount_pretokens on UTF-8 bytes, cut at each "
     "occurrence of a special token (specials: (UTF-8 bytes, id) pairs; leftmost, then longest; the tokens themselves "
     "not counted), with no str made. False, with nothing counted, when data is not well-formed UTF-8 (decode it to "
     "get Python's error)."},
    {"reset_counts", (PyCFunction)Encoder_reset_counts, METH_NOARGS, "Drop the counts gathered so far."},
    {"take_counts_packed", (PyCFunction)Encoder_take_counts_packed, METH_NOARGS,
     "take_counts_packed() -> bytes\n\ntake_counts as one bytes object: per pre-token a uint32 length, an int64 count "
     "(native byte order) and its bytes; the counts are then reset."},
    {"add_counts_packed", (PyCFunction)Encoder_add_counts_packed, METH_O,
     "add_counts_packed(packed: bytes) -> None\n\nAdd counts from take_counts_packed to this Encoder's counts; "
     "ValueError (and nothing added) when the buffer is truncated."},
    {"take_counts", (PyCFunction)Encoder_take_counts, METH_NOARGS,
     "take_counts() -> dict[bytes, int]\n\nThe counts gathered by count_pretokens since the last call, which are then reset."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Encoder_getset[] = {
    {"cache_size", (getter)Encoder_cache_size, NULL, "Number of cached pre-tokens.", NULL},
    {"small_cache_slots", (getter)Encoder_small_cache_slots, NULL,
     "Slots of the cache of pre-tokens of up to 16 bytes (0 before the first encode; it doubles as it fills).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Encoder_doc,
"Encoder(byte_ids, merges, letter_ranges, number_ranges, space_ranges)\n"
"\n"
"byte_ids: the 256 single-byte ids; merges: (left id, right id, merged id) in rank order;\n"
"*_ranges: (start, end) code point ranges (end exclusive) of \\p{L}, \\p{N} and \\s.");

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm.tokenizer._bpe_encode.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Encoder_doc,
    .tp_methods = Encoder_methods,
    .tp_getset = Encoder_getset,
    .tp_init = (initproc)Encoder_init,
    .tp_new = PyType_GenericNew,
};

/* utf8_of(text) -> bytes: text's UTF-8 as the encoder takes it (str_utf8), for the tests that
   compare it with str.encode("utf-8"). */
static PyObject *module_utf8_of(PyObject *Py_UNUSED(m), PyObject *text) {
    const uint8_t *s;
    size_t n;
    if (text_utf8(text, "utf8_of", &s, &n) < 0) return NULL;
    return PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n);
}

static PyMethodDef module_methods[] = {
    {"utf8_of", (PyCFunction)module_utf8_of, METH_O,
     "utf8_of(text) -> bytes: text's UTF-8 as the encoder reads it (made once and kept with the str, as CPython's own)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "tinylm.tokenizer._bpe_encode",
    "Tokenizer.encode_ordinary (GPT-2 pre-tokenization and BPE) in C.",
    -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__bpe_encode(void) {
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&PackedIdsType) < 0) return NULL;
    small_masks_init();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&PackedIdsType);
    if (PyModule_AddObject(m, "PackedIds", (PyObject *)&PackedIdsType) < 0) {
        Py_DECREF(&PackedIdsType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(&EncoderType);
        Py_DECREF(m);
        return NULL;
    }
    /* the most pre-tokens the caches hold at once (general + small), e.g. for tests */
    if (PyModule_AddIntConstant(m, "CACHE_ENTRY_LIMIT", (long)CACHE_LIMIT + (long)SMALL_LIMIT) < 0 ||
        PyModule_AddIntConstant(m, "SMALL_CACHE_SLOTS", 1L << SMALL_MIN_BITS) < 0 ||
        PyModule_AddIntConstant(m, "SMALL_CACHE_MAX_SLOTS", 1L << SMALL_MAX_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
