"""Pre-tokenization: the GPT-2 pattern, splitting on special tokens, and safe chunk boundaries.

Text is first cut at special tokens (so no merge crosses a document boundary), then each piece
is split into pre-tokens by the GPT-2 pattern. Its letter, number and white-space classes are
not taken from whatever Unicode version `regex` or Python carries: they are the pinned table in
tinylm.tokenizer.unicode_table (Unicode 16.0.0, the version of tiktoken 0.14's tables), which
the C pre-tokenizer reads too.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from functools import lru_cache

from tinylm.errors import ConfigError
from tinylm.tokenizer import unicode_table

# The pattern as GPT-2, tiktoken and the `regex` module spell it (\p{L}, \p{N}, \s from their own
# Unicode tables). tinylm matches it with the classes of unicode_table instead: see gpt2_regex.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_BMP_END = 0x10000
_UNICODE_END = 0x110000

CodePointRanges = tuple[tuple[int, int], ...]


def _pairs(flat: tuple[int, ...]) -> CodePointRanges:
    return tuple(zip(flat[0::2], flat[1::2]))


def class_ranges() -> tuple[CodePointRanges, CodePointRanges, CodePointRanges]:
    """(letters, numbers, spaces): the pinned \\p{L}, \\p{N} and \\s of the GPT-2 pattern.

    Each is a tuple of (start, end) code point ranges, end exclusive, sorted and disjoint, from
    tinylm.tokenizer.unicode_table (Unicode unicode_table.UNICODE_VERSION).
    """
    return (
        _pairs(unicode_table.LETTER_RANGES),
        _pairs(unicode_table.NUMBER_RANGES),
        _pairs(unicode_table.SPACE_RANGES),
    )


def _set_items(ranges: Iterable[tuple[int, int]], below: int) -> str:
    """The ranges clipped to code points < below, as the inside of an `re` character set."""
    items = []
    for a, b in ranges:
        b = min(b, below)
        if a < b:
            items.append(f"\\U{a:08X}" if b - a == 1 else f"\\U{a:08X}-\\U{b - 1:08X}")
    return "".join(items)


@lru_cache(maxsize=None)
def gpt2_regex(below: int = _BMP_END) -> re.Pattern:
    """The GPT-2 pattern with the pinned classes, exact for text whose code points are all < below.

    `re` keeps a character set below U+10000 as one bitmap lookup per character but tests each
    range above it in turn (several times slower on every pre-token), so the sets stop at `below`: 0x80
    for ASCII text, 0x10000 (the default) for the rest. Text with characters above U+FFFF is
    matched through _bmp_stand_ins.
    """
    letters, numbers, spaces = (_set_items(r, below) for r in class_ranges())
    pattern = (
        rf"'(?:[sdmt]|ll|ve|re)| ?[{letters}]+| ?[{numbers}]+| ?[^{spaces}{letters}{numbers}]+"
        rf"|[{spaces}]+(?![^{spaces}])|[{spaces}]+"
    )
    return re.compile(pattern)


@lru_cache(maxsize=1)
def _astral_classes() -> tuple[list[int], list[str]]:
    """Class intervals above U+FFFF (their starts, sorted) and, per interval, a BMP stand-in.

    The pattern looks at a character only through its class (and at a few ASCII literals), so a
    non-ASCII BMP character of the same class matches exactly where the original would.
    """
    named = list(zip(("L", "N", "S"), class_ranges()))
    classed = sorted((a, b, name) for name, ranges in named for a, b in ranges)
    stand_in = {name: chr(next(max(a, 0x80) for a, b in ranges if b > 0x80)) for name, ranges in named}
    stand_in["O"] = next(chr(c) for c in range(0x80, _BMP_END) if not any(a <= c < b for a, b, _ in classed))
    starts, stand_ins, pos = [_BMP_END], [stand_in["O"]], _BMP_END
    for a, b, name in classed:
        if b <= _BMP_END:
            continue
        a = max(a, _BMP_END)
        if a > pos:  # the gap before this range is "other"
            starts.append(pos)
            stand_ins.append(stand_in["O"])
        starts.append(a)
        stand_ins.append(stand_in[name])
        pos = b
    starts.append(pos)
    stand_ins.append(stand_in["O"])
    return starts, stand_ins


_ASTRAL_RUN = re.compile("[\U00010000-\U0010FFFF]+")


def _bmp_stand_ins(text: str) -> str:
    """text with each character above U+FFFF replaced by a BMP one of the same class (same length)."""
    starts, stand_ins = _astral_classes()

    def replace(run: re.Match) -> str:
        return "".join([stand_ins[bisect_right(starts, ord(ch)) - 1] for ch in run.group()])

    return _ASTRAL_RUN.sub(replace, text)


def _code_point_bound(text: str) -> int:
    """0x80, 0x10000 or 0x110000: an upper bound of the code points in text."""
    if text.isascii():
        return 0x80
    if len(text.encode("utf-16-le", "surrogatepass")) == 2 * len(text):  # no pair: nothing above U+FFFF
        return _BMP_END
    return _UNICODE_END


def pretokenize(text: str) -> list[str]:
    """Split text (containing no special tokens) into GPT-2 pre-tokens, with the pinned classes."""
    bound = _code_point_bound(text)
    if bound <= _BMP_END:
        return gpt2_regex(bound).findall(text)
    return [text[m.start() : m.end()] for m in gpt2_regex().finditer(_bmp_stand_ins(text))]


def validate_special_tokens(special_tokens: Iterable[str] | None) -> list[str]:
    """Reject empty or duplicate special tokens with a clear message; keep their order."""
    tokens = list(special_tokens or [])
    seen = set()
    for tok in tokens:
        if not isinstance(tok, str):
            raise ConfigError(f"special tokens must be strings, got {tok!r}")
        if tok == "":
            raise ConfigError("special tokens must not be empty")
        if tok in seen:
            raise ConfigError(f"special token {tok!r} is given twice")
        seen.add(tok)
    return tokens


def special_token_regex(special_tokens: Iterable[str]) -> re.Pattern | None:
    """An alternation of the escaped tokens, longest first so overlapping tokens match longest."""
    tokens = sorted(set(special_tokens), key=lambda t: (-len(t), t))
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in tokens))


def split_on_special(text: str, special_re: re.Pattern | None) -> list[str]:
    """The text between special tokens (the tokens themselves dropped)."""
    if special_re is None:
        return [text]
    return special_re.split(text)


def iter_pretokens(text: str, special_re: re.Pattern | None) -> Iterator[str]:
    for piece in split_on_special(text, special_re):
        if piece:
            yield from pretokenize(piece)


# --- safe places to cut a byte stream -------------------------------------------------------
# A cut is safe when pre-tokenizing the two halves separately gives the same pre-tokens as the
# whole. Besides a special token, two ASCII contexts are provably safe for the GPT-2 pattern:
#   * "\n" preceded by a non-space and followed by a non-space: "\n" is then a pre-token of its
#     own (cut after it);
#   * " " preceded by a non-space and followed by a letter: the space starts " word" (cut
#     before it).
# Both are ASCII bytes, so the cut never falls inside a UTF-8 sequence.
_SAFE_NEWLINE = re.compile(rb"[\x21-\x7e]\n(?=[\x21-\x7e])")
_SAFE_SPACE = re.compile(rb"[\x21-\x7e] (?=[A-Za-z])")


def _straddles_special(buf: bytes, cut: int, special_bytes: list[bytes]) -> bool:
    """True when some special token occurrence would be cut in two at `cut`."""
    for tok in special_bytes:
        for k in range(1, len(tok)):
            if cut - k >= 0 and buf.startswith(tok, cut - k):
                return True
    return False


def find_safe_cut(buf: bytes, special_bytes: list[bytes], start: int = 0) -> int:
    """The smallest safe offset >= start in buf where the stream may be cut, or -1.

    Prefers a special token (cut before it); otherwise a safe newline or space. Searching a
    bounded window keeps memory bounded even for a file with no special token at all. A cut
    never splits an occurrence of a special token (overlapping tokens included).
    """
    pos = start
    while True:
        best = -1
        for tok in special_bytes:
            i = buf.find(tok, pos)
            if i != -1 and (best == -1 or i < best):
                best = i
        if best == -1:
            break
        if not _straddles_special(buf, best, special_bytes):
            return best
        pos = best + 1
    for pattern, use_end in ((_SAFE_NEWLINE, True), (_SAFE_SPACE, False)):
        pos = max(0, start - 1)
        while True:
            m = pattern.search(buf, pos)
            if not m:
                break
            cut = m.end() if use_end else m.start() + 1
            if cut >= start and not _straddles_special(buf, cut, special_bytes):
                return cut
            pos = m.start() + 1
    return -1
