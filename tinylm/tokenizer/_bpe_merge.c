/*
 * tinylm.tokenizer._bpe_merge: the BPE merge loop of tinylm.tokenizer.train.bpe_merges in C.
 *
 * merge(words, freqs, num_merges, progress_callback=None) -> list[tuple[int, int]]
 * merge_packed(blob, ends, freqs, num_merges, progress_callback=None): the same over words packed
 *   in one buffer (what train_bpe passes: ~25 bytes per distinct word on the Python side)
 *
 * Same algorithm and same result as the pure-Python bpe_merges(dict(zip(words, freqs)), ...):
 *   - ids 0..255 are the bytes, merge k creates id 256+k;
 *   - pair counts (int64), an index pair -> words that (may) hold it, a lazy max-heap;
 *   - each step takes the pair with the highest count; ties go to the lexicographically
 *     greatest (token_bytes[a], token_bytes[b]), then (only when two distinct ids spell the
 *     same bytes) to the smaller ids, exactly like the Python heap tuples (-count, key, a, b);
 *   - a merge rewrites words leftmost-first, non-overlapping ("aaa" -> [X, a]), and updates only
 *     the pairs next to each merge site, with the same bookkeeping as the Python code.
 *
 * The core loop runs without the GIL in blocks of PROGRESS_EVERY merges; between blocks it takes
 * the GIL back to call progress_callback(merges_done) and PyErr_CheckSignals().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_EVERY 100

/* ------------------------------------------------------------------------------------------ */
/* Pairs                                                                                      */

typedef struct {
    int32_t a, b;
    int64_t count;   /* current total count; 0 = absent (popped) */
    int64_t delta;   /* accumulated change during the current merge step */
    int32_t mark;    /* step in which this pair was last put on the touched list */
    int32_t nw, cw;  /* words index: length, capacity */
    int32_t *words;  /* word indices that may hold the pair (stale entries allowed) */
} Pair;

typedef struct {
    int64_t count;   /* count when filed */
    int32_t a, b;
    int32_t pid;
} HeapEntry;

typedef struct {
    /* words: ids in one buffer, word i at data[off[i] .. off[i] + len[i]) */
    int32_t *data;
    int64_t *off;
    int32_t *len;
    int64_t *freq;
    Py_ssize_t nwords;
    int32_t maxlen;

    /* pairs and the hash map (a, b) -> pid, open addressing, linear probing */
    Pair *pairs;
    int32_t npairs, cpairs;
    int32_t *table;  /* pid or -1 */
    uint64_t tmask;  /* capacity - 1 */

    /* heap */
    HeapEntry *heap;
    size_t nheap, cheap;

    /* token bytes */
    unsigned char *tok;
    int64_t *tok_off;
    int32_t *tok_len;
    size_t ntok_bytes, ctok_bytes;
    int32_t ntok, ctok;

    /* per-step scratch */
    int32_t *out;
    int32_t *touched;
    int32_t ntouched, ctouched;
    int32_t step;

    /* result */
    int32_t *merges;  /* 2 * nmerges */
    int32_t nmerges;

    /* prepare_packed / run */
    Py_ssize_t limit;  /* num_merges asked for */
    int used;          /* run() was called */
} State;

static inline uint64_t pair_hash(int32_t a, int32_t b) {
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int table_grow(State *s) {
    uint64_t ncap = (s->tmask + 1) * 2;
    int32_t *nt = (int32_t *)malloc(ncap * sizeof(int32_t));
    if (!nt) return -1;
    memset(nt, 0xff, ncap * sizeof(int32_t));
    uint64_t nmask = ncap - 1;
    for (int32_t pid = 0; pid < s->npairs; pid++) {
        uint64_t h = pair_hash(s->pairs[pid].a, s->pairs[pid].b) & nmask;
        while (nt[h] >= 0) h = (h + 1) & nmask;
        nt[h] = pid;
    }
    free(s->table);
    s->table = nt;
    s->tmask = nmask;
    return 0;
}

/* pid of (a, b), creating an absent (count 0) pair if needed; -1 on memory error. */
static int32_t pair_get(State *s, int32_t a, int32_t b) {
    uint64_t h = pair_hash(a, b) & s->tmask;
    for (;;) {
        int32_t pid = s->table[h];
        if (pid < 0) break;
        if (s->pairs[pid].a == a && s->pairs[pid].b == b) return pid;
        h = (h + 1) & s->tmask;
    }
    if (s->npairs == INT32_MAX) return -1;
    if ((uint64_t)(s->npairs + 1) * 2 > s->tmask + 1) {
        if (table_grow(s) < 0) return -1;
        h = pair_hash(a, b) & s->tmask;
        while (s->table[h] >= 0) h = (h + 1) & s->tmask;
    }
    if (s->npairs == s->cpairs) {
        int32_t nc = s->cpairs < (INT32_MAX / 2) ? s->cpairs * 2 : INT32_MAX;
        Pair *np = (Pair *)realloc(s->pairs, (size_t)nc * sizeof(Pair));
        if (!np) return -1;
        s->pairs = np;
        s->cpairs = nc;
    }
    int32_t pid = s->npairs++;
    Pair *p = &s->pairs[pid];
    p->a = a;
    p->b = b;
    p->count = 0;
    p->delta = 0;
    p->mark = -1;
    p->nw = p->cw = 0;
    p->words = NULL;
    s->table[h] = pid;
    return pid;
}

/* Python: lst = pair_words.get(pair); append wi unless it is already the last entry. */
static int pair_add_word(Pair *p, int32_t wi) {
    if (p->nw > 0 && p->words[p->nw - 1] == wi) return 0;
    if (p->nw == p->cw) {
        int32_t nc = p->cw ? p->cw * 2 : 2;
        int32_t *nw = (int32_t *)realloc(p->words, (size_t)nc * sizeof(int32_t));
        if (!nw) return -1;
        p->words = nw;
        p->cw = nc;
    }
    p->words[p->nw++] = wi;
    return 0;
}

static void pair_drop_words(Pair *p) {
    free(p->words);
    p->words = NULL;
    p->nw = p->cw = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Heap: "better" = higher count, then greater (bytes[a], bytes[b]), then smaller a, then b.   */

static inline int tok_cmp(const State *s, int32_t x, int32_t y) {
    if (x == y) return 0;
    int32_t lx = s->tok_len[x], ly = s->tok_len[y];
    int c = memcmp(s->tok + s->tok_off[x], s->tok + s->tok_off[y], (size_t)(lx < ly ? lx : ly));
    if (c) return c;
    return (lx > ly) - (lx < ly);
}

static inline int better(const State *s, const HeapEntry *x, const HeapEntry *y) {
    if (x->count != y->count) return x->count > y->count;
    int c = tok_cmp(s, x->a, y->a);
    if (c) return c > 0;
    c = tok_cmp(s, x->b, y->b);
    if (c) return c > 0;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void sift_down(State *s, size_t i) {
    HeapEntry *h = s->heap;
    size_t n = s->nheap;
    HeapEntry e = h[i];
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t best = l;
        if (l + 1 < n && better(s, &h[l + 1], &h[l])) best = l + 1;
        if (!better(s, &h[best], &e)) break;
        h[i] = h[best];
        i = best;
    }
    h[i] = e;
}

static int heap_push(State *s, int64_t count, int32_t pid) {
    if (s->nheap == s->cheap) {
        size_t nc = s->cheap ? s->cheap * 2 : 1024;
        HeapEntry *nh = (HeapEntry *)realloc(s->heap, nc * sizeof(HeapEntry));
        if (!nh) return -1;
        s->heap = nh;
        s->cheap = nc;
    }
    HeapEntry e;
    e.count = count;
    e.a = s->pairs[pid].a;
    e.b = s->pairs[pid].b;
    e.pid = pid;
    size_t i = s->nheap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!better(s, &e, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = e;
    return 0;
}

static HeapEntry heap_pop(State *s) {
    HeapEntry top = s->heap[0];
    s->nheap--;
    if (s->nheap > 0) {
        s->heap[0] = s->heap[s->nheap];
        sift_down(s, 0);
    }
    return top;
}

/* ------------------------------------------------------------------------------------------ */

static int add_token(State *s, int32_t a, int32_t b) {
    if (s->ntok == s->ctok) {
        int32_t nc = s->ctok * 2;
        int64_t *no = (int64_t *)realloc(s->tok_off, (size_t)nc * sizeof(int64_t));
        if (!no) return -1;
        s->tok_off = no;
        int32_t *nl = (int32_t *)realloc(s->tok_len, (size_t)nc * sizeof(int32_t));
        if (!nl) return -1;
        s->tok_len = nl;
        s->ctok = nc;
    }
    size_t la = (size_t)s->tok_len[a], lb = (size_t)s->tok_len[b];
    if (la + lb > INT32_MAX) return -1;
    if (s->ntok_bytes + la + lb > s->ctok_bytes) {
        size_t nc = s->ctok_bytes * 2;
        while (nc < s->ntok_bytes + la + lb) nc *= 2;
        unsigned char *nt = (unsigned char *)realloc(s->tok, nc);
        if (!nt) return -1;
        s->tok = nt;
        s->ctok_bytes = nc;
    }
    int64_t off = (int64_t)s->ntok_bytes;
    memcpy(s->tok + off, s->tok + s->tok_off[a], la);
    memcpy(s->tok + off + la, s->tok + s->tok_off[b], lb);
    s->ntok_bytes += la + lb;
    s->tok_off[s->ntok] = off;
    s->tok_len[s->ntok] = (int32_t)(la + lb);
    s->ntok++;
    return 0;
}

/* delta[(x, y)] += d; remembers the pair on the touched list. Returns pid or -1. */
static int32_t add_delta(State *s, int32_t x, int32_t y, int64_t d) {
    int32_t pid = pair_get(s, x, y);
    if (pid < 0) return -1;
    Pair *p = &s->pairs[pid];
    if (p->mark != s->step) {
        p->mark = s->step;
        p->delta = 0;
        if (s->ntouched == s->ctouched) {
            int32_t nc = s->ctouched ? s->ctouched * 2 : 1024;
            int32_t *nt = (int32_t *)realloc(s->touched, (size_t)nc * sizeof(int32_t));
            if (!nt) return -1;
            s->touched = nt;
            s->ctouched = nc;
        }
        s->touched[s->ntouched++] = pid;
    }
    p->delta += d;
    return pid;
}

/* One merge of the pair filed as `pid` (its count already checked). 0, or -1 on memory error. */
static int do_merge(State *s, int32_t mpid) {
    int32_t a = s->pairs[mpid].a, b = s->pairs[mpid].b;
    int32_t new_id = s->ntok;
    if (add_token(s, a, b) < 0) return -1;
    s->merges[2 * s->nmerges] = a;
    s->merges[2 * s->nmerges + 1] = b;
    s->nmerges++;

    /* pair_counts.pop((a, b)); lst = pair_words.pop((a, b)) */
    Pair *mp = &s->pairs[mpid];
    mp->count = 0;
    int32_t *lst = mp->words;
    int32_t nlst = mp->nw;
    mp->words = NULL;
    mp->nw = mp->cw = 0;

    s->step++;
    s->ntouched = 0;
    int32_t *out = s->out;
    int rc = 0;
    for (int32_t li = 0; li < nlst; li++) {
        int32_t wi = lst[li];
        int32_t *w = s->data + s->off[wi];
        int32_t n = s->len[wi];
        int64_t f = s->freq[wi];
        int32_t m = 0, copied = 0, found = 0;
        int32_t j = 0;
        while (j < n) {
            if (w[j] == a && j + 1 < n && w[j + 1] == b) {
                found = 1;
                memcpy(out + m, w + copied, (size_t)(j - copied) * sizeof(int32_t));
                m += j - copied;
                if (j > 0 && copied != j) { /* left neighbour not itself just merged */
                    if (add_delta(s, w[j - 1], a, -f) < 0) { rc = -1; goto done; }
                }
                if (j + 2 < n) {
                    if (add_delta(s, b, w[j + 2], -f) < 0) { rc = -1; goto done; }
                }
                out[m++] = new_id;
                copied = j + 2;
                j = copied;
            } else {
                j++;
            }
        }
        if (!found) continue; /* stale index entry: the pair left this word earlier */
        memcpy(out + m, w + copied, (size_t)(n - copied) * sizeof(int32_t));
        m += n - copied;
        for (int32_t k = 0; k < m; k++) {
            if (out[k] != new_id) continue;
            if (k > 0) {
                int32_t pid = add_delta(s, out[k - 1], new_id, f);
                if (pid < 0 || pair_add_word(&s->pairs[pid], wi) < 0) { rc = -1; goto done; }
            }
            if (k + 1 < m && out[k + 1] != new_id) {
                int32_t pid = add_delta(s, new_id, out[k + 1], f);
                if (pid < 0 || pair_add_word(&s->pairs[pid], wi) < 0) { rc = -1; goto done; }
            }
        }
        memcpy(w, out, (size_t)m * sizeof(int32_t));
        s->len[wi] = m;
    }

    /* delta.pop((a, b)); apply the rest */
    for (int32_t t = 0; t < s->ntouched; t++) {
        int32_t pid = s->touched[t];
        if (pid == mpid) continue;
        Pair *p = &s->pairs[pid];
        int64_t d = p->delta;
        p->delta = 0;
        if (d == 0) continue;
        int64_t count = p->count + d;
        if (count > 0) {
            p->count = count;
            if (d > 0) { /* only pairs that hold the new token grow; file them now */
                if (heap_push(s, count, pid) < 0) { rc = -1; goto done; }
            }
        } else {
            p->count = 0;
            pair_drop_words(p);
        }
    }
done:
    free(lst);
    return rc;
}

static void state_free(State *s) {
    if (s->pairs) {
        for (int32_t i = 0; i < s->npairs; i++) free(s->pairs[i].words);
    }
    free(s->pairs);
    free(s->table);
    free(s->heap);
    free(s->data);
    free(s->off);
    free(s->len);
    free(s->freq);
    free(s->tok);
    free(s->tok_off);
    free(s->tok_len);
    free(s->out);
    free(s->touched);
    free(s->merges);
    memset(s, 0, sizeof(*s));
}

/* Allocates the state for nw words of `total` bytes in all, the longest `maxlen`. */
static int state_alloc(State *s, Py_ssize_t nw, int64_t total, int32_t maxlen, Py_ssize_t num_merges) {
    s->nwords = nw;
    s->data = (int32_t *)malloc((size_t)(total ? total : 1) * sizeof(int32_t));
    s->off = (int64_t *)malloc((size_t)(nw ? nw : 1) * sizeof(int64_t));
    s->len = (int32_t *)malloc((size_t)(nw ? nw : 1) * sizeof(int32_t));
    s->freq = (int64_t *)malloc((size_t)(nw ? nw : 1) * sizeof(int64_t));
    s->out = (int32_t *)malloc((size_t)(maxlen ? maxlen : 1) * sizeof(int32_t));
    s->maxlen = maxlen;
    s->cpairs = 1 << 16;
    s->pairs = (Pair *)malloc((size_t)s->cpairs * sizeof(Pair));
    s->tmask = (1u << 17) - 1;
    s->table = (int32_t *)malloc((s->tmask + 1) * sizeof(int32_t));
    s->ctok = 512;
    s->tok_off = (int64_t *)malloc((size_t)s->ctok * sizeof(int64_t));
    s->tok_len = (int32_t *)malloc((size_t)s->ctok * sizeof(int32_t));
    s->ctok_bytes = 4096;
    s->tok = (unsigned char *)malloc(s->ctok_bytes);
    s->merges = (int32_t *)malloc((size_t)(num_merges ? num_merges : 1) * 2 * sizeof(int32_t));
    if (!s->data || !s->off || !s->len || !s->freq || !s->out || !s->pairs || !s->table || !s->tok_off ||
        !s->tok_len || !s->tok || !s->merges) {
        PyErr_NoMemory();
        return -1;
    }
    memset(s->table, 0xff, (s->tmask + 1) * sizeof(int32_t));
    for (int32_t i = 0; i < 256; i++) {
        s->tok[i] = (unsigned char)i;
        s->tok_off[i] = i;
        s->tok_len[i] = 1;
    }
    s->ntok = 256;
    s->ntok_bytes = 256;
    return 0;
}

/* Word i's bytes become its first ids (0..255). */
static void state_set_word(State *s, Py_ssize_t i, int64_t pos, const unsigned char *src, int32_t l, int64_t f) {
    s->off[i] = pos;
    s->len[i] = l;
    s->freq[i] = f;
    int32_t *dst = s->data + pos;
    for (int32_t k = 0; k < l; k++) dst[k] = src[k];
}

/* With every word in place: pair counts, the pair -> words index and the heap. */
static int state_index(State *s) {
    int rc = 0;
    Py_ssize_t nw = s->nwords;
    Py_BEGIN_ALLOW_THREADS
    /* Pass 1: pairs, their counts, and how many words hold each (mark = last word seen). */
    for (Py_ssize_t i = 0; i < nw && rc == 0; i++) {
        const int32_t *w = s->data + s->off[i];
        for (int32_t k = 0; k + 1 < s->len[i]; k++) {
            int32_t pid = pair_get(s, w[k], w[k + 1]);
            if (pid < 0) { rc = -1; break; }
            Pair *p = &s->pairs[pid];
            p->count += s->freq[i];
            if (p->mark != (int32_t)i) {
                p->mark = (int32_t)i;
                p->cw++;
            }
        }
    }
    /* Pass 2: each pair's word list allocated at its exact size (no doubling slack), then filled. */
    for (int32_t pid = 0; pid < s->npairs && rc == 0; pid++) {
        Pair *p = &s->pairs[pid];
        p->mark = -1;
        p->words = (int32_t *)malloc((size_t)p->cw * sizeof(int32_t));
        if (!p->words) { p->cw = 0; rc = -1; }
    }
    for (Py_ssize_t i = 0; i < nw && rc == 0; i++) {
        const int32_t *w = s->data + s->off[i];
        for (int32_t k = 0; k + 1 < s->len[i]; k++) {
            int32_t pid = pair_get(s, w[k], w[k + 1]);
            if (pid < 0 || pair_add_word(&s->pairs[pid], (int32_t)i) < 0) { rc = -1; break; }
        }
    }
    if (rc == 0) {
        s->cheap = (size_t)s->npairs * 2 + 1024;
        s->heap = (HeapEntry *)malloc(s->cheap * sizeof(HeapEntry));
        if (!s->heap) rc = -1;
    }
    if (rc == 0) {
        for (int32_t pid = 0; pid < s->npairs; pid++) {
            HeapEntry *e = &s->heap[s->nheap++];
            e->count = s->pairs[pid].count;
            e->a = s->pairs[pid].a;
            e->b = s->pairs[pid].b;
            e->pid = pid;
        }
        for (size_t i = s->nheap / 2; i-- > 0;) sift_down(s, i);
    }
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Reads the words (a sequence of bytes) and frequencies (a sequence of int), then indexes them. */
static int state_init(State *s, PyObject *words, PyObject *freqs, Py_ssize_t num_merges) {
    Py_ssize_t nw = PySequence_Fast_GET_SIZE(words);
    PyObject **wv = PySequence_Fast_ITEMS(words);
    PyObject **fv = PySequence_Fast_ITEMS(freqs);
    if (nw >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many words");
        return -1;
    }

    int64_t total = 0;
    int32_t maxlen = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        if (!PyBytes_Check(wv[i])) {
            PyErr_Format(PyExc_TypeError, "words[%zd] must be bytes, not %.100s", i, Py_TYPE(wv[i])->tp_name);
            return -1;
        }
        Py_ssize_t l = PyBytes_GET_SIZE(wv[i]);
        if (l >= INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "word too long");
            return -1;
        }
        if (l > maxlen) maxlen = (int32_t)l;
        total += l;
    }
    if (state_alloc(s, nw, total, maxlen, num_merges) < 0) return -1;

    int64_t pos = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        int overflow = 0;
        long long f = PyLong_AsLongLongAndOverflow(fv[i], &overflow);
        if (f == -1 && PyErr_Occurred()) return -1;
        if (overflow) {
            PyErr_Format(PyExc_OverflowError, "freqs[%zd] does not fit in int64", i);
            return -1;
        }
        if (f < 1) {
            PyErr_Format(PyExc_ValueError, "freqs[%zd] must be positive, got %lld", i, f);
            return -1;
        }
        int32_t l = (int32_t)PyBytes_GET_SIZE(wv[i]);
        state_set_word(s, i, pos, (const unsigned char *)PyBytes_AS_STRING(wv[i]), l, (int64_t)f);
        pos += l;
    }
    return state_index(s);
}

/* Reads packed words: word i is blob[ends[i-1] .. ends[i]) (ends[-1] = 0), frequency freqs[i]. */
static int state_init_packed(State *s, const Py_buffer *blob, const Py_buffer *ends, const Py_buffer *freqs,
                             Py_ssize_t num_merges) {
    Py_ssize_t nw = ends->len / (Py_ssize_t)sizeof(int64_t);
    if (freqs->len / (Py_ssize_t)sizeof(int64_t) != nw) {
        PyErr_SetString(PyExc_ValueError, "ends and freqs must have the same length");
        return -1;
    }
    if (nw >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many words");
        return -1;
    }
    const int64_t *e = (const int64_t *)ends->buf;
    const int64_t *f = (const int64_t *)freqs->buf;
    int64_t prev = 0;
    int32_t maxlen = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        if (e[i] < prev || e[i] > (int64_t)blob->len) {
            PyErr_Format(PyExc_ValueError, "ends[%zd] = %lld is not between %lld (the previous end) and len(blob) = %zd",
                         i, (long long)e[i], (long long)prev, blob->len);
            return -1;
        }
        if (e[i] - prev >= INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "word too long");
            return -1;
        }
        if (f[i] < 1) {
            PyErr_Format(PyExc_ValueError, "freqs[%zd] must be positive, got %lld", i, (long long)f[i]);
            return -1;
        }
        if (e[i] - prev > maxlen) maxlen = (int32_t)(e[i] - prev);
        prev = e[i];
    }
    if (state_alloc(s, nw, prev, maxlen, num_merges) < 0) return -1;
    const unsigned char *src = (const unsigned char *)blob->buf;
    prev = 0;
    for (Py_ssize_t i = 0; i < nw; i++) {
        state_set_word(s, i, prev, src + prev, (int32_t)(e[i] - prev), f[i]);
        prev = e[i];
    }
    return state_index(s);
}

/* Runs merges until `limit` are done or the heap is empty. Call without the GIL. */
static int run_block(State *s, int32_t limit) {
    while (s->nmerges < limit && s->nheap > 0) {
        HeapEntry e = heap_pop(s);
        int64_t actual = s->pairs[e.pid].count;
        if (actual != e.count) {
            if (actual > 0) { /* counts only fall after a pair's creation step: re-file lazily */
                if (heap_push(s, actual, e.pid) < 0) return -1;
            }
            continue;
        }
        if (do_merge(s, e.pid) < 0) return -1;
    }
    return 0;
}

/* Runs up to num_merges merges (GIL released between progress calls); the merges as a list of id pairs. */
static PyObject *state_run(State *s, Py_ssize_t num_merges, PyObject *callback) {
    if (PyErr_CheckSignals() < 0) return NULL;
    while (s->nmerges < num_merges && s->nheap > 0) {
        int32_t limit = s->nmerges + PROGRESS_EVERY;
        if (limit > num_merges) limit = (int32_t)num_merges;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_block(s, limit);
        Py_END_ALLOW_THREADS
        if (rc < 0) return PyErr_NoMemory();
        if (PyErr_CheckSignals() < 0) return NULL;
        if (callback != Py_None) {
            PyObject *r = PyObject_CallFunction(callback, "i", (int)s->nmerges);
            if (!r) return NULL;
            Py_DECREF(r);
        }
    }
    PyObject *result = PyList_New(s->nmerges);
    if (!result) return NULL;
    for (int32_t k = 0; k < s->nmerges; k++) {
        PyObject *t = Py_BuildValue("(ii)", (int)s->merges[2 * k], (int)s->merges[2 * k + 1]);
        if (!t) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, k, t);
    }
    return result;
}

static int check_merge_args(Py_ssize_t num_merges, PyObject *callback) {
    if (num_merges < 0) {
        PyErr_SetString(PyExc_ValueError, "num_merges must be non-negative");
        return -1;
    }
    if (num_merges > INT32_MAX - 256) {
        PyErr_SetString(PyExc_OverflowError, "num_merges too large");
        return -1;
    }
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "progress_callback must be callable or None");
        return -1;
    }
    return 0;
}

static PyObject *bpe_merge(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"words", "freqs", "num_merges", "progress_callback", NULL};
    PyObject *words_in, *freqs_in, *callback = Py_None;
    Py_ssize_t num_merges;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOn|O:merge", kwlist, &words_in, &freqs_in, &num_merges,
                                     &callback))
        return NULL;
    if (check_merge_args(num_merges, callback) < 0) return NULL;
    PyObject *words = PySequence_Fast(words_in, "words must be a sequence of bytes");
    if (!words) return NULL;
    PyObject *freqs = PySequence_Fast(freqs_in, "freqs must be a sequence of int");
    if (!freqs) {
        Py_DECREF(words);
        return NULL;
    }
    PyObject *result = NULL;
    State s;
    memset(&s, 0, sizeof(s));
    if (PySequence_Fast_GET_SIZE(words) != PySequence_Fast_GET_SIZE(freqs)) {
        PyErr_SetString(PyExc_ValueError, "words and freqs must have the same length");
        goto out;
    }
    {
        /* dict(zip(words, freqs)) would fold duplicates; the caller passes dict keys, so refuse them */
        PyObject *distinct = PySet_New(words);
        if (!distinct) goto out;
        Py_ssize_t nd = PySet_GET_SIZE(distinct);
        Py_DECREF(distinct);
        if (nd != PySequence_Fast_GET_SIZE(words)) {
            PyErr_SetString(PyExc_ValueError, "words must be distinct");
            goto out;
        }
    }
    if (state_init(&s, words, freqs, num_merges) < 0) goto out;
    result = state_run(&s, num_merges, callback);
out:
    state_free(&s);
    Py_DECREF(words);
    Py_DECREF(freqs);
    return result;
}

PyDoc_STRVAR(merge_doc,
"merge(words, freqs, num_merges, progress_callback=None) -> list[tuple[int, int]]\n"
"\n"
"Learn up to num_merges byte-level BPE merges over distinct words (bytes) with positive\n"
"frequencies (int64). Ids 0..255 are the bytes; merge k creates id 256+k. Returns the merged\n"
"id pairs in order -- the same list as tinylm.tokenizer.train.bpe_merges(dict(zip(words, freqs)),\n"
"num_merges). Each step takes the most frequent pair, ties to the lexicographically greatest\n"
"(bytes, bytes). Words must be distinct (as dict keys are). progress_callback, if given, is\n"
"called as progress_callback(merges_done_so_far) about every 100 merges and at the end.");

/* A C-contiguous buffer of native signed 64-bit integers (struct format q, or l where long is 64-bit). */
static int get_int64_buffer(PyObject *obj, Py_buffer *view, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int64 buffer (array('q') or numpy int64)", name);
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=' || (*f == '<' && PY_LITTLE_ENDIAN)) f++;
    int ok = view->itemsize == (Py_ssize_t)sizeof(int64_t) && (strcmp(f, "q") == 0 || (strcmp(f, "l") == 0 && sizeof(long) == 8));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a buffer of int64 (array('q') or numpy int64), got format '%s'",
                     name, view->format ? view->format : "B");
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

#define STATE_CAPSULE "tinylm.tokenizer._bpe_merge.State"

static void state_capsule_free(PyObject *capsule) {
    State *s = (State *)PyCapsule_GetPointer(capsule, STATE_CAPSULE);
    if (s) {
        state_free(s);
        free(s);
    }
}

/* prepare_packed(blob, ends, freqs, num_merges) -> state: the loop's own copy of the words, so the
   caller can free its buffers before run(state) does the merges. */
static PyObject *bpe_prepare_packed(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"blob", "ends", "freqs", "num_merges", NULL};
    Py_buffer blob = {0}, ends = {0}, freqs = {0};
    PyObject *ends_obj, *freqs_obj, *capsule = NULL;
    Py_ssize_t num_merges;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*OOn:prepare_packed", kwlist, &blob, &ends_obj, &freqs_obj, &num_merges))
        return NULL;
    State *s = (State *)calloc(1, sizeof(State));
    if (!s) {
        PyBuffer_Release(&blob);
        return PyErr_NoMemory();
    }
    if (check_merge_args(num_merges, Py_None) < 0) goto fail;
    if (get_int64_buffer(ends_obj, &ends, "ends") < 0) goto fail;
    if (get_int64_buffer(freqs_obj, &freqs, "freqs") < 0) goto fail;
    if (state_init_packed(s, &blob, &ends, &freqs, num_merges) < 0) goto fail;
    s->limit = num_merges;
    capsule = PyCapsule_New(s, STATE_CAPSULE, state_capsule_free);
    if (!capsule) goto fail;
    s = NULL;
fail:
    if (s) {
        state_free(s);
        free(s);
    }
    PyBuffer_Release(&blob);
    if (ends.obj) PyBuffer_Release(&ends);
    if (freqs.obj) PyBuffer_Release(&freqs);
    return capsule;
}

/* run(state, progress_callback=None) -> merges, for a state from prepare_packed (once). */
static PyObject *bpe_run(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"state", "progress_callback", NULL};
    PyObject *capsule, *callback = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:run", kwlist, &capsule, &callback)) return NULL;
    State *s = (State *)PyCapsule_GetPointer(capsule, STATE_CAPSULE);
    if (!s) return NULL;
    if (check_merge_args(s->limit, callback) < 0) return NULL;
    if (s->used) {
        PyErr_SetString(PyExc_ValueError, "this state has already been run; prepare a new one");
        return NULL;
    }
    s->used = 1;
    PyObject *result = state_run(s, s->limit, callback);
    state_free(s);  /* the merges are in result: give the memory back now, not when the capsule dies */
    s->used = 1;    /* (state_free zeroes the struct) */
    return result;
}

static PyObject *bpe_merge_packed(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"blob", "ends", "freqs", "num_merges", "progress_callback", NULL};
    Py_buffer blob = {0}, ends = {0}, freqs = {0};
    PyObject *ends_obj, *freqs_obj;
    Py_ssize_t num_merges;
    PyObject *callback = Py_None, *result = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*OOn|O:merge_packed", kwlist, &blob, &ends_obj, &freqs_obj,
                                     &num_merges, &callback))
        return NULL;
    State s;
    memset(&s, 0, sizeof(s));
    if (check_merge_args(num_merges, callback) < 0) goto out;
    if (get_int64_buffer(ends_obj, &ends, "ends") < 0) goto out;
    if (get_int64_buffer(freqs_obj, &freqs, "freqs") < 0) goto out;
    if (state_init_packed(&s, &blob, &ends, &freqs, num_merges) < 0) goto out;
    result = state_run(&s, num_merges, callback);
out:
    state_free(&s);
    PyBuffer_Release(&blob);
    if (ends.obj) PyBuffer_Release(&ends);
    if (freqs.obj) PyBuffer_Release(&freqs);
    return result;
}

PyDoc_STRVAR(merge_packed_doc,
"merge_packed(blob, ends, freqs, num_merges, progress_callback=None) -> list[tuple[int, int]]\n"
"\n"
"merge() over words packed in one buffer, for corpora with many distinct words: word i is\n"
"blob[ends[i-1]:ends[i]] (ends[-1] taken as 0), with frequency freqs[i]; ends and freqs are\n"
"int64 buffers (array('q'), numpy int64). About 25 bytes per word instead of about 95 for a\n"
"list of bytes and a list of int. A word given twice counts as once with the summed frequency\n"
"(pair counts are sums over words), so the result is merge() of the distinct words.");

static PyMethodDef methods[] = {
    {"merge", (PyCFunction)(void (*)(void))bpe_merge, METH_VARARGS | METH_KEYWORDS, merge_doc},
    {"merge_packed", (PyCFunction)(void (*)(void))bpe_merge_packed, METH_VARARGS | METH_KEYWORDS, merge_packed_doc},
    {"prepare_packed", (PyCFunction)(void (*)(void))bpe_prepare_packed, METH_VARARGS | METH_KEYWORDS,
     "prepare_packed(blob, ends, freqs, num_merges) -> state\n\nmerge_packed in two steps: this copies and indexes "
     "the words (the caller may then free its buffers), run(state, progress_callback=None) does the merges."},
    {"run", (PyCFunction)(void (*)(void))bpe_run, METH_VARARGS | METH_KEYWORDS,
     "run(state, progress_callback=None) -> list[tuple[int, int]]\n\nThe merges for a state from prepare_packed; "
     "a state runs once (its memory is freed when run returns)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "tinylm.tokenizer._bpe_merge",
    "The BPE merge loop of tinylm.tokenizer.train.bpe_merges, in C.",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__bpe_merge(void) { return PyModule_Create(&module); }
