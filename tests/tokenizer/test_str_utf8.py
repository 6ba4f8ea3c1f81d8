"""The encoder's own str -> UTF-8 (tinylm/tokenizer/_str_utf8.h) against CPython's.

It must give exactly str.encode("utf-8")'s bytes for every kind of str (Latin-1, UCS-2 and UCS-4
storage, ASCII runs that do and do not fill its 16-unit blocks), raise CPython's own
UnicodeEncodeError on a lone surrogate, and keep the copy with the str as CPython does (so a second
call, or CPython's own PyUnicode_AsUTF8AndSize, reuses it)."""

import random
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

_bpe_encode = pytest.importorskip("tinylm.tokenizer._bpe_encode")
utf8_of = _bpe_encode.utf8_of

# one character of each UTF-8 length and each str storage kind, and the edges between them
EDGES = ["a", "\x00", "\x7f", "\x80", "\xe9", "\xff", "\u0100", "\u07ff", "\u0800", "\ud7ff", "\ue000",
         "\uffff", "\U00010000", "\U0001f600", "\U0010ffff"]


def fresh(s: str) -> str:
    """An equal str object made now, so no UTF-8 copy is attached to it yet."""
    return "".join(list(s))


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("ascii_run", [0, 1, 15, 16, 17, 31, 32, 33, 100])
@pytest.mark.parametrize("carrier", ["", "\u0100", "\U0001f600"])
def test_every_edge_after_every_ascii_run_length(edge, ascii_run, carrier):
    """The SIMD loop takes 16 units at a time: an edge character before, inside and after a block,
    in a str stored as Latin-1, UCS-2 or UCS-4 (the carrier, far ahead, sets the storage kind)."""
    pad = carrier + "." * 40 if carrier else ""
    for text in ("x" * ascii_run + edge, edge + "y" * ascii_run, "p" * ascii_run + edge + "q" * ascii_run + edge):
        text = pad + text
        # the reference comes from a str of its own: str.encode reuses a copy attached to its str
        assert utf8_of(fresh(text)) == fresh(text).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
       | st.lists(st.sampled_from(EDGES + ["b", " ", "\n"]), max_size=300).map("".join))
def test_equals_str_encode(text):
    assert utf8_of(fresh(text)) == fresh(text).encode("utf-8")


@pytest.mark.parametrize("kind_char", ["", "\xe9", "\u20ac", "\U0001f600"])
def test_long_mostly_ascii_text_of_each_kind(kind_char):
    rng = random.Random(len(kind_char))
    words = ["the", "cat", " ", "\n", "  ", "sat,", "'s", "\xe9", "\x85"] + ([kind_char] if kind_char else [])
    text = "".join(rng.choice(words) for _ in range(50_000))
    assert utf8_of(fresh(text)) == fresh(text).encode("utf-8")


@pytest.mark.parametrize("text", ["\ud800", "abc\udfff", "x" * 40 + "\ud83d", "\xe9\udc80z", "\U0001f600\ud800"])
def test_a_lone_surrogate_raises_cpythons_error(text):
    with pytest.raises(UnicodeEncodeError) as ours:
        utf8_of(fresh(text))
    with pytest.raises(UnicodeEncodeError) as cpython:
        text.encode("utf-8")
    assert (ours.value.start, ours.value.end, ours.value.reason) == (cpython.value.start, cpython.value.end, cpython.value.reason)


@pytest.mark.parametrize("text", ["caf\xe9 " * 1000, "\u20ac" + "abc" * 500, "\U0001f600 ok " * 300])
def test_the_copy_is_kept_with_the_str_once(text):
    """As CPython's own: the str grows by the copy (and its NUL) once; a second call reuses it."""
    s = fresh(text)
    before = sys.getsizeof(s)
    first = utf8_of(s)
    kept = sys.getsizeof(s)
    assert kept == before + len(first) + 1
    assert utf8_of(s) == first and sys.getsizeof(s) == kept
    assert s.encode("utf-8") == first


def test_ascii_and_non_str():
    assert utf8_of(fresh("plain ascii " * 10)) == b"plain ascii " * 10
    with pytest.raises(TypeError, match="expects str"):
        utf8_of(b"bytes")


def test_the_copy_is_freed_by_cpythons_allocator():
    """The copy is allocated as CPython allocates its own and freed by CPython with the str: under
    PYTHONMALLOC=debug a mismatched allocator or a write past the copy aborts the interpreter."""
    import os
    import subprocess

    script = (
        "from tinylm.tokenizer._bpe_encode import utf8_of\n"
        "for i in range(300):\n"
        "    s = ''.join(list('caf\\xe9 \\u20ac \\U0001f600 x' * (i + 1)))\n"
        "    assert utf8_of(s) == s.encode()\n"
        "    del s\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONMALLOC": "debug"}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
