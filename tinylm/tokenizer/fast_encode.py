"""The optional C encoder (tinylm.tokenizer._bpe_encode) and the Unicode tables it needs.

The C matcher classifies code points as \\p{L}, \\p{N}, \\s or other. The tables come from the
`regex` module itself (the one pretokenize uses), so both paths agree on every code point.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from tinylm.errors import ConfigError

try:
    from tinylm.tokenizer import _bpe_encode
except ImportError:  # optional extension: no compiler at install time
    _bpe_encode = None

BACKENDS = ("auto", "c", "python")


def c_backend_available() -> bool:
    return _bpe_encode is not None


@lru_cache(maxsize=1)
def unicode_class_ranges() -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) code point ranges, end exclusive, of \\p{L}, \\p{N} and \\s (about 0.2 s, once)."""
    every = "".join(map(chr, range(0x110000)))
    return tuple([(m.start(), m.end()) for m in regex.finditer(p, every)] for p in (r"\p{L}+", r"\p{N}+", r"\s+"))


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "c" and _bpe_encode is None:
        raise ConfigError(
            "backend='c' needs the C extension tinylm.tokenizer._bpe_encode, which is not built; "
            "reinstall with a C compiler (`pip install -e .`) or use backend='auto'"
        )


def make_encoder(backend: str, byte_ids: list[int], merge_triples: list[tuple[int, int, int]]):
    """The C Encoder for backend 'c' or 'auto' (when built), else None (pure Python)."""
    check_backend(backend)
    if backend == "python" or _bpe_encode is None:
        return None
    letters, numbers, spaces = unicode_class_ranges()
    try:
        return _bpe_encode.Encoder(byte_ids, merge_triples, letters, numbers, spaces)
    except (ValueError, OverflowError) as exc:  # ids the C side cannot hold
        if backend == "c":
            raise ConfigError(f"the C encoder cannot take this vocabulary: {exc}") from None
        return None
