/*
 * A str's UTF-8, made at memory speed and kept with the str as CPython keeps its own.
 *
 * str_utf8(text, &s, &n) gives the same bytes, the same lifetime and the same errors as
 * PyUnicode_AsUTF8AndSize(text, &n): an ASCII str is its own UTF-8; otherwise the UTF-8 copy is
 * made once and stored in the str (PyCompactUnicodeObject.utf8 / utf8_length, allocated with
 * PyObject_Malloc and freed by CPython with the str), so a later call, ours or CPython's, reuses
 * it. Only the making differs: CPython's encoder (Objects/stringlib/codecs.h, utf8_encoder) takes
 * one code unit at a time; here runs of ASCII code units are narrowed 16 at a time (SSE2), which on
 * English text is nearly all of it, and the copy is written into memory advised for transparent
 * huge pages (a 20 MB copy otherwise takes ~5,000 page faults). Measured in docs/BENCHMARKS.md.
 *
 * Anything unusual goes to CPython's own function, so its result and errors stay the reference:
 * a lone surrogate (UnicodeEncodeError, raised by CPython with its message), a str that is not
 * compact (legacy strings, gone since 3.12), a free-threaded build (the utf8 field is then written
 * under a lock this code cannot take), or a CPython outside 3.8-3.12: those allocate the copy with
 * PyObject_Malloc and free it with PyObject_Free, as here; later CPythons (seen in the source of
 * 3.13's successors) use PyMem_Malloc / PyMem_Free and per-object locks, which a copy of ours
 * would have to match (the two allocators are one in a release build, not under
 * PYTHONMALLOC=debug), so they keep CPython's own conversion. tests/tokenizer/test_str_utf8.py
 * compares the bytes with str.encode for every kind of str and checks that the copy is kept
 * (sys.getsizeof grows by it, once); run under PYTHONMALLOC=debug it also checks the allocator.
 */
#ifndef TINYLM_STR_UTF8_H
#define TINYLM_STR_UTF8_H

#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if PY_VERSION_HEX >= 0x03080000 && PY_VERSION_HEX < 0x030D0000 && !defined(Py_GIL_DISABLED) && !defined(Py_LIMITED_API)
#define STR_UTF8_FAST 1
#else
#define STR_UTF8_FAST 0
#endif

#define HUGE_PAGE_BYTES ((size_t)2 << 20) /* a transparent huge page; also the encoder's table_alloc */

/* Advises the whole 2 MB pages inside p[0..size) for transparent huge pages (Linux), so that
   writing them first takes one page fault per 2 MB, not one per 4 KB (a 20 MB copy otherwise
   takes ~5,000 faults). Advice only: nothing changes elsewhere, and memory from malloc stays
   malloc's. Measured (benchmarks/ab_encoder_builds.py --processes, 11 rounds): the fresh encode
   of 20 MB 3% faster with the advice on the UTF-8 copy; the same advice on the encoder's output
   buffer made it 5% slower (with THP's defrag on "madvise" a fault may compact memory first), so
   the output buffer has none. */
static void advise_huge_pages(void *p, size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (size < 2 * HUGE_PAGE_BYTES) return;
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
    uintptr_t hi = ((uintptr_t)p + size) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)size;
#endif
}

#if STR_UTF8_FAST
/* Writes the UTF-8 of the code point c (< 0x110000) at o; returns the byte after it, or NULL
   for a surrogate (U+D800..U+DFFF: not encodable, left to CPython, which raises). */
static inline uint8_t *put_code_point(uint8_t *o, uint32_t c) {
    if (c < 0x80) {
        *o++ = (uint8_t)c;
    } else if (c < 0x800) {
        *o++ = (uint8_t)(0xC0 | (c >> 6));
        *o++ = (uint8_t)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        if (c >= 0xD800 && c < 0xE000) return NULL;
        *o++ = (uint8_t)(0xE0 | (c >> 12));
        *o++ = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (c & 0x3F));
    } else {
        *o++ = (uint8_t)(0xF0 | (c >> 18));
        *o++ = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
        *o++ = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (c & 0x3F));
    }
    return o;
}

/* Copies the ASCII run of 16-unit blocks that starts at unit i of src (kind 1, 2 or 4 bytes a
   unit) to *o as bytes, SSE2 16 units at a time, stopping at the first block holding a unit
   >= 0x80 or with fewer than 16 units left; returns the unit it stopped at, *o advanced. */
static inline Py_ssize_t ascii_blocks(int kind, const void *src, Py_ssize_t i, Py_ssize_t n, uint8_t **o) {
#if defined(__SSE2__)
    uint8_t *w = *o;
    const __m128i zero = _mm_setzero_si128();
    if (kind == PyUnicode_1BYTE_KIND) {
        const uint8_t *u = (const uint8_t *)src;
        for (; i + 16 <= n; i += 16, w += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(u + i));
            if (_mm_movemask_epi8(v)) break; /* a byte >= 0x80 */
            _mm_storeu_si128((__m128i *)w, v);
        }
    } else if (kind == PyUnicode_2BYTE_KIND) {
        const uint16_t *u = (const uint16_t *)src;
        const __m128i high = _mm_set1_epi16((short)0xFF80);
        for (; i + 16 <= n; i += 16, w += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(u + i)), b = _mm_loadu_si128((const __m128i *)(u + i + 8));
            if (_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(_mm_or_si128(a, b), high), zero)) != 0xFFFF) break;
            _mm_storeu_si128((__m128i *)w, _mm_packus_epi16(a, b));
        }
    } else {
        const uint32_t *u = (const uint32_t *)src;
        const __m128i high = _mm_set1_epi32((int)0xFFFFFF80);
        for (; i + 16 <= n; i += 16, w += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(u + i)), b = _mm_loadu_si128((const __m128i *)(u + i + 4));
            __m128i c = _mm_loadu_si128((const __m128i *)(u + i + 8)), d = _mm_loadu_si128((const __m128i *)(u + i + 12));
            __m128i any = _mm_and_si128(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)), high);
            if (_mm_movemask_epi8(_mm_cmpeq_epi32(any, zero)) != 0xFFFF) break;
            /* every unit < 0x80: the signed 32 -> 16 -> 8 packs keep them as they are */
            _mm_storeu_si128((__m128i *)w, _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d)));
        }
    }
    *o = w;
#else
    (void)kind;
    (void)src;
    (void)n;
    (void)o;
#endif
    return i;
}

/* Writes the UTF-8 of the n code units src (kind 1, 2 or 4 bytes each) to dst, which has room
   for the worst case (utf8_room); returns the bytes written, or -1 at a surrogate (left to
   CPython, which raises). ASCII blocks 16 units at a time (ascii_blocks); a block that is not
   all ASCII one code point at a time, so text that is mostly not ASCII pays one test per 16. */
static Py_ssize_t utf8_of_units(int kind, const void *src, Py_ssize_t n, uint8_t *dst) {
    uint8_t *o = dst;
    for (Py_ssize_t i = 0; i < n;) {
        i = ascii_blocks(kind, src, i, n, &o);
        for (Py_ssize_t stop = i + 16 < n ? i + 16 : n; i < stop; i++)
            if (!(o = put_code_point(o, PyUnicode_READ(kind, src, i)))) return -1;
    }
    return (Py_ssize_t)(o - dst);
}

/* The most UTF-8 bytes n code units of `kind` can take: 2 per Latin-1 unit, 3 per UCS-2 unit
   (a surrogate pair cannot occur in a UCS-2 str), 4 per UCS-4 unit. -1 on overflow. */
static Py_ssize_t utf8_room(int kind, Py_ssize_t n) {
    Py_ssize_t per = kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4;
    if (n > (PY_SSIZE_T_MAX - 1) / per) return -1;
    return n * per + 1;
}

#endif /* STR_UTF8_FAST */

#if STR_UTF8_FAST
/* str_utf8's own path: 1 with *s, *n set (the copy made now, or found made), 0 when the str is
   left to CPython (ASCII, not compact, or a lone surrogate), -1 with an exception set. */
static int str_utf8_own(PyObject *text, const char **s, Py_ssize_t *n) {
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(text)) return 0;
#endif
    if (!PyUnicode_IS_COMPACT(text) || PyUnicode_IS_ASCII(text)) return 0;
    PyCompactUnicodeObject *u = (PyCompactUnicodeObject *)text;
    if (!u->utf8) {
        int kind = PyUnicode_KIND(text);
        Py_ssize_t units = PyUnicode_GET_LENGTH(text), room = utf8_room(kind, units);
        char *buf = room < 0 ? NULL : (char *)PyObject_Malloc((size_t)room);
        if (!buf) {
            PyErr_NoMemory();
            return -1;
        }
        advise_huge_pages(buf, (size_t)room);
        Py_ssize_t len;
        Py_BEGIN_ALLOW_THREADS /* text is immutable; buf is ours until stored */
        len = utf8_of_units(kind, PyUnicode_DATA(text), units, (uint8_t *)buf);
        Py_END_ALLOW_THREADS
        if (len < 0) { /* a lone surrogate: CPython raises its own UnicodeEncodeError */
            PyObject_Free(buf);
            return 0;
        }
        buf[len] = '\0';
        if (len + 1 < room) { /* give back the unused worst case (in place for a large block) */
            char *shrunk = (char *)PyObject_Realloc(buf, (size_t)len + 1);
            if (shrunk) buf = shrunk;
        }
        if (u->utf8) { /* made meanwhile by another thread (the GIL was released): keep that one */
            PyObject_Free(buf);
        } else {
            u->utf8 = buf;
            u->utf8_length = len;
        }
    }
    *s = u->utf8; /* made now, or before (by us or by CPython) */
    *n = u->utf8_length;
    return 1;
}
#endif

/* text (a str) as UTF-8: *s (borrowed from text, valid while text lives) and *n bytes, as
   PyUnicode_AsUTF8AndSize gives them (see the top of this file). 0, or -1 with an exception set. */
static int str_utf8(PyObject *text, const char **s, Py_ssize_t *n) {
#if STR_UTF8_FAST
    int own = str_utf8_own(text, s, n);
    if (own != 0) return own < 0 ? -1 : 0;
#endif
    const char *r = PyUnicode_AsUTF8AndSize(text, n);
    *s = r;
    return r ? 0 : -1;
}

#endif /* TINYLM_STR_UTF8_H */
