"""The optional C encoder (tinylm.tokenizer._bpe_encode) and the Unicode tables it needs.

The C matcher classifies code points as \\p{L}, \\p{N}, \\s or other by the pinned table of
tinylm.tokenizer.unicode_table, the one the Python pre-tokenizer's pattern is built from, so both
paths agree on every code point whatever Python or `regex` is installed.
"""

from __future__ import annotations

from tinylm.errors import ConfigError
from tinylm.tokenizer.pretokenize import CodePointRanges, class_ranges

try:
    from tinylm.tokenizer import _bpe_encode
except ImportError:  # optional extension: no compiler at install time
    _bpe_encode = None

BACKENDS = ("auto", "c", "python")


def c_backend_available() -> bool:
    return _bpe_encode is not None


def unicode_class_ranges() -> tuple[CodePointRanges, CodePointRanges, CodePointRanges]:
    """(start, end) code point ranges, end exclusive, of \\p{L}, \\p{N} and \\s: the pinned table
    (see pretokenize.class_ranges)."""
    return class_ranges()


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
