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
    """Reject empty, duplicate or not UTF-8-encodable special tokens (ConfigError); keep their order."""
    tokens = list(special_tokens or [])
    seen = set()
    for tok in tokens:
        if not isinstance(tok, str):
            raise ConfigError(f"special tokens must be strings, got {tok!r}")
        if tok == "":
            raise ConfigError("special tokens must not be empty")
        if tok in seen:
            raise ConfigError(f"special token {tok!r} is given twice")
        try:
            tok.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"special token {tok!r} holds a lone surrogate, which has no UTF-8 form") from None
        seen.add(tok)
    return tokens


def special_token_regex(special_tokens: Iterable[str]) -> re.Pattern | None:
    """A compiled pattern whose matches are special tokens, leftmost first and longest at each start.

    None when there are no tokens. The pattern of `special_matcher(special_tokens)` (see
    SpecialTokenMatcher), kept for callers that want a plain `re.Pattern`.
    """
    return special_matcher(special_tokens).pattern(str)


def split_on_special(text: str, special: "SpecialTokenMatcher | re.Pattern | None") -> list[str]:
    """The text between special tokens (the tokens themselves dropped)."""
    if special is None or not special:
        return [text]
    return special.split(text)


def iter_pretokens(text: str, special: "SpecialTokenMatcher | re.Pattern | None") -> Iterator[str]:
    for piece in split_on_special(text, special):
        if piece:
            yield from pretokenize(piece)


# --- matching special tokens ----------------------------------------------------------------
# The one rule everywhere (Tokenizer.encode, splitting for BPE counting, safe cuts): scanning left
# to right, the leftmost occurrence of any special token is taken, and of the tokens that start
# there the longest; scanning resumes after it. A flat alternation sorted longest first gives this
# rule too, but `re` tries its branches one by one, so every candidate position costs a look at
# each token. The pattern built here is the tokens' trie written as a regular expression: at each
# node the branches start with distinct characters (at most one can go on), and a token that is a
# prefix of longer ones becomes an optional group `(?:...)?`, which `re` tries greedily first and
# gives up only when no longer token matches. Matching at a position then walks one path of the
# trie: its length, times a first-character check per branch at each node (at most the number of
# distinct next characters, not the number of tokens); building is linear in the tokens' total
# length (plus a sort).
_MAX_TRIE_NESTING = 100  # `re` compiles nested groups recursively: past this, the flat alternation


class _TooDeep(Exception):
    pass


def _trie_source(tokens: list, off: int, depth: int):
    """Pattern source for the longest of `tokens` that matches, read from their offset `off`.

    tokens: sorted, distinct, all str or all bytes, sharing tokens[i][:off]; a token ending at off
    (then the first) makes the rest optional. Raises _TooDeep past _MAX_TRIE_NESTING groups.
    """
    if depth > _MAX_TRIE_NESTING:
        raise _TooDeep
    bar, optional, open_, close = (b"|", b"?", b"(?:", b")") if isinstance(tokens[0], bytes) else ("|", "?", "(?:", ")")
    terminal = len(tokens[0]) == off
    rest = tokens[1:] if terminal else tokens
    branches = []
    i = 0
    while i < len(rest):  # one branch per next character; sorted, so each is a run
        head = rest[i][off : off + 1]
        j = i + 1
        while j < len(rest) and rest[j][off : off + 1] == head:
            j += 1
        first, last = rest[i], rest[j - 1]  # sorted: their common prefix is the whole run's
        common = off + 1
        while common < len(first) and common < len(last) and first[common] == last[common]:
            common += 1
        branch = re.escape(first[off:common])
        if j - i > 1:
            branch += _trie_source(rest[i:j], common, depth + 1)
        branches.append(branch)
        i = j
    body = bar.join(branches)
    if terminal:  # never without branches: tokens are distinct
        return open_ + body + close + optional
    return body if len(branches) == 1 or depth == 0 else open_ + body + close


def _longest_match_pattern(tokens: list) -> re.Pattern:
    """Compiled pattern matching the longest of `tokens` (all str or all bytes) at each position."""
    tokens = sorted(tokens)
    try:
        source = _trie_source(tokens, 0, 0)
    except _TooDeep:  # tokens nested more than _MAX_TRIE_NESTING deep: the same matches, slower
        bar = b"|" if isinstance(tokens[0], bytes) else "|"
        source = bar.join(re.escape(t) for t in sorted(tokens, key=lambda t: (-len(t), t)))
    return re.compile(source)


class SpecialTokenMatcher:
    """Finds special tokens in text (str) or in its UTF-8 bytes, leftmost first, longest at each start.

    tokens: non-empty strings in any order (duplicates count once); ConfigError otherwise.
    Bytes and characters give the same matches: a token is valid UTF-8, so in valid UTF-8 text its
    bytes can only occur starting and ending at character boundaries. Each pattern is compiled on
    first use and kept; building costs O(total token length), matching one trie path per
    candidate position, not one try per token (see the comment above).
    """

    def __init__(self, tokens: Iterable[str]):
        unique = set()
        for tok in tokens:
            if not isinstance(tok, str) or not tok:
                raise ConfigError(f"special tokens must be non-empty strings, got {tok!r}")
            unique.add(tok)
        self.tokens: tuple[str, ...] = tuple(sorted(unique))
        self.max_chars: int = max(map(len, self.tokens), default=0)
        self.max_bytes: int = max((len(t.encode("utf-8", "surrogatepass")) for t in self.tokens), default=0)
        self._patterns: dict[type, re.Pattern] = {}

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getstate__(self) -> dict:
        return {"tokens": self.tokens, "max_chars": self.max_chars, "max_bytes": self.max_bytes, "_patterns": {}}

    def pattern(self, kind: type = str) -> re.Pattern | None:
        """The compiled pattern for str (kind=str) or UTF-8 bytes (kind=bytes); None without tokens."""
        if not self.tokens:
            return None
        pat = self._patterns.get(kind)
        if pat is None:
            toks = list(self.tokens) if kind is str else [t.encode("utf-8", "surrogatepass") for t in self.tokens]
            pat = self._patterns[kind] = _longest_match_pattern(toks)
        return pat

    def _for(self, text) -> tuple[re.Pattern, int]:
        if isinstance(text, str):
            return self.pattern(str), self.max_chars
        return self.pattern(bytes), self.max_bytes

    def finditer(self, text: str | bytes, pos: int = 0) -> Iterator[re.Match]:
        """The special tokens of text from pos, as encoding takes them (non-overlapping)."""
        if not self.tokens:
            return iter(())
        return self._for(text)[0].finditer(text, pos)

    def search(self, text: str | bytes, pos: int = 0) -> re.Match | None:
        """The leftmost (then longest) occurrence at or after pos, or None."""
        if not self.tokens:
            return None
        return self._for(text)[0].search(text, pos)

    def split(self, text: str) -> list[str]:
        """The text between the special tokens finditer yields."""
        if not self.tokens:
            return [text]
        return self.pattern(str).split(text)

    def crossing_end(self, buf: str | bytes, cut: int) -> int:
        """The end of the longest-reaching occurrence that starts before cut and ends after it, or -1.

        Every occurrence counts, overlapping ones included, not only those encoding would take, so
        a cut no occurrence crosses is a boundary of the encoding whatever text comes before (a
        taken token crossing it would be such an occurrence). buf must hold max_chars - 1
        characters (max_bytes - 1 bytes for bytes) on each side of cut, or reach the text's start
        or end there. At most max_chars pattern searches, each over at most 2 * max_chars.
        """
        if not self.tokens:
            return -1
        pat, max_len = self._for(buf)
        pos = max(0, cut - max_len + 1)
        endpos = min(len(buf), cut + max_len - 1)
        reach = -1
        while pos < cut:
            m = pat.search(buf, pos, endpos)  # the longest token at the first start >= pos
            if m is None or m.start() >= cut:
                break
            if m.end() > cut:
                reach = max(reach, m.end())
            pos = m.start() + 1
        return reach


@lru_cache(maxsize=16)
def _cached_matcher(tokens: frozenset) -> SpecialTokenMatcher:
    return SpecialTokenMatcher(tokens)


def special_matcher(special_tokens: Iterable[str]) -> SpecialTokenMatcher:
    """The SpecialTokenMatcher of a set of tokens, shared (its compiled patterns built once per process)."""
    tokens = special_tokens if isinstance(special_tokens, frozenset) else frozenset(special_tokens)
    return _cached_matcher(tokens)


# --- safe places to cut a text ---------------------------------------------------------------
# A cut is safe when encoding (or pre-tokenizing) the two halves separately gives what the whole
# gives. It takes two things:
#   1. no occurrence of a special token crosses the cut (SpecialTokenMatcher.crossing_end): then
#      whatever comes before, no token encoding takes crosses it, and scanning for tokens from the
#      cut is what scanning the whole does from there (the leftmost-longest scan keeps no other
#      state than its position); nor does a disallowed token encoding must find and refuse;
#   2. the cut is a pre-token boundary of the GPT-2 pattern that does not depend on the text
#      beyond the three characters around it. Three such places:
#      * before an occurrence of a token encoding takes (the text between tokens ends there
#        anyway; a token treated as plain text is no boundary);
#      * after "\n" preceded and followed by a non-space: the pattern has no alternative that
#        crosses a space character, and "\s+(?!\S)" fails on the lone "\n" before a non-space, so
#        "\s+" makes it a pre-token of its own, in the whole and at the end of the left half;
#      * before " " preceded by a non-space and followed by an ASCII letter: " ?\p{L}+" takes the
#        space with the word, and the pre-token before ends at the non-space in both.
#      In bytes (file ranges) the non-spaces are printable ASCII, so a cut never falls inside a
#      UTF-8 sequence; in str (streaming) they are any character outside Python's \s, which holds
#      every character of the pattern's \s (tested over all code points).
# Special-token boundaries are exact whatever surrounds them; a text cut at a piece edge by its
# reader (mid-word, mid-token) is simply not a candidate.
_SAFE_CUT_BYTES = re.compile(rb"(?<=[\x21-\x7e])(\n)(?=[\x21-\x7e])|(?<=[\x21-\x7e])( )(?=[A-Za-z])")
_SAFE_CUT_STR = re.compile(r"(?<=\S)(\n)(?=\S)|(?<=\S)( )(?=[A-Za-z])")


def _first_cut_before_special(buf: str | bytes, taken: SpecialTokenMatcher, guard: SpecialTokenMatcher, lo: int, hi: int) -> int:
    """The first start in [lo, hi] of an occurrence of a taken token that no guarded occurrence crosses, or -1."""
    pos = lo
    while pos <= hi:
        m = taken.search(buf, pos)
        if m is None or m.start() > hi:
            return -1
        reach = guard.crossing_end(buf, m.start())
        if reach == -1:
            return m.start()
        pos = reach  # every start before reach is crossed by the same occurrence
    return -1


def _first_cut_in_text(buf: str | bytes, guard: SpecialTokenMatcher, lo: int, hi: int) -> int:
    """The first newline or space cut (see above) in [lo, hi] that no guarded occurrence crosses, or -1."""
    pattern = _SAFE_CUT_STR if isinstance(buf, str) else _SAFE_CUT_BYTES
    pos = max(0, lo - 1)  # a newline cut falls one past its match
    while True:
        m = pattern.search(buf, pos)
        if m is None:
            return -1
        cut = m.end() if m.lastindex == 1 else m.start()
        if cut > hi:
            return -1
        if cut >= lo:
            reach = guard.crossing_end(buf, cut)
            if reach == -1:
                return cut
            pos = max(m.start() + 1, reach - 1)
        else:
            pos = m.start() + 1


def find_safe_cut(
    buf: str | bytes, taken: SpecialTokenMatcher, lo: int, hi: int, guard: SpecialTokenMatcher | None = None
) -> int:
    """The smallest safe cut c with lo <= c <= hi in buf (text or its UTF-8 bytes), or -1.

    taken: the special tokens encoding takes as tokens (the allowed ones). guard: every token an
    occurrence of which must not be split, a superset of taken (default: taken); add the
    disallowed tokens, which encoding looks for. Safe: encoding buf[:c] and buf[c:] apart gives
    exactly what encoding buf gives, wherever buf sits in a larger text, provided buf holds at
    least max(guard's longest token, 2) characters (bytes) on each side of [lo, hi], or reaches
    the text's start or end there. Candidates: before a taken token, after an isolated newline,
    before " word" (see the comment above); never where a guarded occurrence would be split.
    Cost: one pass over buf[lo - 1 : c + 1] per kind, plus at most (longest token) pattern
    searches per candidate rejected or taken.
    """
    guard = taken if guard is None else guard
    special = _first_cut_before_special(buf, taken, guard, lo, hi) if taken else -1
    text = _first_cut_in_text(buf, guard, lo, hi if special == -1 else special - 1)
    return text if text != -1 else special


def safe_pieces(blocks: Iterable[str], piece_chars: int, taken: SpecialTokenMatcher,
                guard: SpecialTokenMatcher | None = None) -> Iterator[str]:
    """The text given in blocks, re-cut into pieces of at least piece_chars characters (but the last)
    that end at safe cuts (find_safe_cut with taken and guard), so processing the pieces apart gives
    what processing the whole text gives. Memory: about one piece plus one block (text with no safe
    cut for a long stretch is held whole, and the buffer waits to double before it is scanned again:
    each character is joined and scanned O(1) times). Streaming encode and corpus reading share it.
    """
    guard = taken if guard is None else guard
    context = max(guard.max_chars, 2)  # characters past a cut that decide whether it is safe
    ready = piece_chars + context  # buffer length worth looking for a cut in
    buf, pending, pending_chars, scanned = "", [], 0, 0  # buf[:scanned] holds no cut
    for block in blocks:
        pending.append(block)
        pending_chars += len(block)
        if len(buf) + pending_chars < ready:
            continue
        buf += "".join(pending)
        pending, pending_chars = [], 0
        start = 0  # buf[:start] is yielded; sliced off once, after the loop (a 1 GB block is not copied per piece)
        while len(buf) - start >= piece_chars + context:
            last = len(buf) - context
            cut = find_safe_cut(buf, taken, max(start + piece_chars, scanned), last, guard)
            if cut == -1:
                scanned = last + 1
                break
            yield buf[start:cut]
            start = scanned = cut
        buf, scanned = buf[start:], scanned - start
        ready = max(piece_chars + context, 2 * len(buf)) if scanned else piece_chars + context
    buf += "".join(pending)
    if buf:
        yield buf
