"""The C helpers, loaded once, and the names of the backends that choose between C and Python.

Two optional extensions are built by `pip install` when a compiler is present (setup.py):
_bpe_encode (the encoder, and the pre-token counter of BPE training) and _bpe_merge (the merge
loop). Each has a pure-Python twin giving identical results; a backend name picks one:

    "auto"    the C helper when built, else Python
    "c"       the C helper, ConfigError when it is not built (encoder and merge loop only)
    "python"  the pure-Python path

The C matcher classifies code points as \\p{L}, \\p{N}, \\s or other by the pinned table of
tinylm.tokenizer.unicode_table, the one the Python pre-tokenizer's pattern is built from, so both
paths agree on every code point whatever Python or `regex` is installed.
"""

from __future__ import annotations

from functools import lru_cache

from tinylm.errors import ConfigError
from tinylm.tokenizer.pretokenize import CodePointRanges, class_ranges

try:
    from tinylm.tokenizer import _bpe_encode
except ImportError:  # optional extension: no compiler at install time
    _bpe_encode = None

try:
    from tinylm.tokenizer import _bpe_merge
except ImportError:
    _bpe_merge = None

AUTO, C, PYTHON = "auto", "c", "python"
ENCODE_BACKENDS = (AUTO, C, PYTHON)  # Tokenizer(backend=...), `tinylm encode --backend`
MERGE_BACKENDS = (AUTO, C, PYTHON)  # BpeTrainer.merge_backend, `tinylm train-bpe --merge-backend`
COUNT_BACKENDS = (AUTO, PYTHON)  # BpeTrainer.count_backend, `tinylm train-bpe --count-backend`
BACKENDS = ENCODE_BACKENDS  # the old name


def c_backend_available() -> bool:
    """Whether the C encoder (and pre-token counter) is built."""
    return _bpe_encode is not None


def compiled_merge_loop():
    """The C merge loop module (tinylm.tokenizer._bpe_merge), or None when it is not built."""
    return _bpe_merge


def unicode_class_ranges() -> tuple[CodePointRanges, CodePointRanges, CodePointRanges]:
    """(start, end) code point ranges, end exclusive, of \\p{L}, \\p{N} and \\s: the pinned table
    (see pretokenize.class_ranges)."""
    return class_ranges()


def check_backend(backend: str) -> None:
    """ConfigError unless `backend` is an encoder backend that can run here."""
    if backend not in ENCODE_BACKENDS:
        raise ConfigError(f"unknown encoder backend {backend!r}; choose one of {', '.join(ENCODE_BACKENDS)}")
    if backend == C and _bpe_encode is None:
        raise ConfigError(
            "backend='c' needs the C extension tinylm.tokenizer._bpe_encode, which is not built; "
            "reinstall with a C compiler (`pip install -e .`) or use backend='auto'"
        )


def check_choice(kind: str, backend: str, choices: tuple[str, ...]) -> None:
    """ConfigError("<kind> backend must be one of ...") unless backend is in choices."""
    if backend not in choices:
        raise ConfigError(f"{kind} backend must be one of {', '.join(choices)}, got {backend!r}")


def make_encoder(backend: str, byte_ids: list[int], merge_triples: list[tuple[int, int, int]]):
    """The C Encoder for backend 'c' or 'auto' (when built), else None (pure Python)."""
    check_backend(backend)
    if backend == PYTHON or _bpe_encode is None:
        return None
    letters, numbers, spaces = unicode_class_ranges()
    try:
        return _bpe_encode.Encoder(byte_ids, merge_triples, letters, numbers, spaces)
    except (ValueError, OverflowError) as exc:  # ids the C side cannot hold
        if backend == C:
            raise ConfigError(f"the C encoder cannot take this vocabulary: {exc}") from None
        return None


@lru_cache(maxsize=1)
def pretoken_counter():
    """This process's C pre-tokenizer and counter (an Encoder with no merges), or None when not built.

    One per process: worker processes forked after the first call inherit it (and its Unicode
    tables) instead of building their own.
    """
    return make_encoder(AUTO, list(range(256)), []) if c_backend_available() else None
