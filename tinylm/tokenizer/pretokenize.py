"""Pre-tokenization: the GPT-2 pattern, splitting on special tokens, and safe chunk boundaries.

Text is first cut at special tokens (so no merge crosses a document boundary), then each piece
is split into pre-tokens by the GPT-2 regex. Pure-ASCII pieces take an `re` pattern that is
exactly equivalent on ASCII and about 1.7x faster than the Unicode-aware `regex` one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import regex

from tinylm.errors import ConfigError

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_UNICODE_RE = regex.compile(GPT2_PATTERN)
# The same pattern restricted to ASCII. Unicode \s on ASCII is exactly [\t\n\v\f\r ], as re.ASCII's.
_ASCII_RE = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", re.ASCII)


def pretokenize(text: str) -> list[str]:
    """Split text (containing no special tokens) into GPT-2 pre-tokens."""
    if text.isascii():
        return _ASCII_RE.findall(text)
    return _UNICODE_RE.findall(text)


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
