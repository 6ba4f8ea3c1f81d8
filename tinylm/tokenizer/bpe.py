"""The Tokenizer: encode / decode / encode_iterable over a byte-level BPE vocabulary.

Encoding splits text on special tokens (longest match wins), pre-tokenizes each piece with the
GPT-2 pattern, and applies merges inside each pre-token in the order they were learned. Pre-tokens
repeat heavily in real text, so each one's ids are cached: most of the work is the regex, and
the lookups run through `map(dict.get, ...)` in C. When the optional C extension
tinylm.tokenizer._bpe_encode is built, the text between special tokens is encoded by it instead
(same ids; see _native.py); backend="python" keeps the pure-Python path.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Iterable, Iterator
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from tinylm.errors import ConfigError, InputFileError, SpecialTokenNotAllowedError, TokenizerFileError, UnknownTokenError
from tinylm.tokenizer.files import (
    MERGES_FILE,
    SPECIAL_TOKENS_FILE,
    VOCAB_FILE,
    load_special_tokens,
    load_vocab_and_merges,
    save_merges,
    save_vocab,
    tokenizer_folder_files,
)
from tinylm.io import atomic_write_files, ensure_output_dir
from tinylm.tokenizer._native import AUTO, check_backend, make_encoder
from tinylm.tokenizer.pretokenize import SpecialTokenMatcher, pretokenize, safe_pieces, special_matcher, validate_special_tokens
from tinylm.tokenizer.token_dtypes import token_dtype

if TYPE_CHECKING:
    from tinylm.tokenizer._bpe_encode import PackedIds  # the C encoder's packed ids (a buffer)

_CACHE_LIMIT = 200_000  # pre-tokens; bounds the cache to a few tens of MB
STREAM_PIECE_CHARS = 1 << 16  # encode_iterable's default piece size (characters)


def _replace_lone_surrogates(text: str) -> str:
    """U+D800..U+DFFF on their own have no UTF-8 form: make them U+FFFD (tiktoken does the same)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _only_str(iterable: Iterable[str]) -> Iterator[str]:
    """The items, checked: encode_iterable takes str only (TypeError when such an item is reached)."""
    for chunk in iterable:
        if not isinstance(chunk, str):
            raise TypeError(f"encode_iterable expects an iterable of str, got {type(chunk).__name__}")
        yield chunk


class _SpecialPlan(NamedTuple):
    """How one encode call treats special tokens, resolved once from allowed/disallowed_special."""

    allowed: SpecialTokenMatcher  # encoded as their ids (may be empty)
    disallowed: SpecialTokenMatcher  # SpecialTokenNotAllowedError when found (may be empty)
    boundaries: SpecialTokenMatcher  # tokens a safe cut must not split: all of the tokenizer's and the disallowed


class Tokenizer:
    """Byte-level BPE tokenizer (GPT-2 compatible).

    vocab: id -> token bytes; merges: (left, right) pairs in the order they were learned;
    special_tokens: strings matched in text before pre-tokenization, added to the vocabulary
    when missing. backend: "auto" (the C encoder when built, else Python), "c" (ConfigError
    when not built) or "python".
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
        *,
        backend: str = AUTO,
    ):
        check_backend(backend)
        specials = validate_special_tokens(special_tokens)
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self.token_to_id: dict[bytes, int] = {tok: idx for idx, tok in self.vocab.items()}
        if len(self.token_to_id) != len(self.vocab):  # find the first repeat, to name it
            seen: dict[bytes, int] = {}
            for idx, tok in self.vocab.items():
                if tok in seen:
                    raise TokenizerFileError(f"token {tok!r} appears twice in the vocabulary (ids {seen[tok]} and {idx})")
                seen[tok] = idx
        next_id = max(self.vocab, default=-1) + 1
        for tok in specials:
            b = tok.encode("utf-8")
            if b not in self.token_to_id:
                self.vocab[next_id] = b
                self.token_to_id[b] = next_id
                next_id += 1
        self.special_tokens: list[str] = specials
        self.special_to_id: dict[str, int] = {t: self.token_to_id[t.encode("utf-8")] for t in specials}
        self._special_set: frozenset[str] = frozenset(specials)
        self._special_matcher: SpecialTokenMatcher = special_matcher(self._special_set)  # compiled on first use

        missing = [b for b in range(256) if bytes([b]) not in self.token_to_id]
        if missing:
            raise TokenizerFileError(f"vocabulary lacks {len(missing)} of the 256 single bytes (first: {missing[0]}); byte-level BPE needs all")
        self._byte_ids: list[int] = [self.token_to_id[bytes([b])] for b in range(256)]
        # rank -> (left id, right id, merged id), in C-level loops (~5x faster than one Python loop
        # for GPT-2's 50,000 merges); a merge that does not match the vocabulary is named below
        get = self.token_to_id.get
        lefts, rights = [a for a, _ in self.merges], [b for _, b in self.merges]
        merged = list(map(bytes.__add__, lefts, rights))
        self._merge_triples: list[tuple[int, int, int]] = list(zip(map(get, lefts), map(get, rights), map(get, merged)))
        if any(None in t for t in self._merge_triples):
            for rank, (a, b) in enumerate(self.merges):
                missing_token = next((t for t in (a, b, a + b) if t not in self.token_to_id), None)
                if missing_token is not None:
                    raise TokenizerFileError(
                        f"merge {rank + 1} ({a!r} + {b!r}) does not match the vocabulary: {missing_token!r} is not in it"
                    )
        self._ranks_built: dict[tuple[int, int], int] | None = None  # the Python encoder's, made on first use
        size = max(self.vocab) + 1
        self._decode_table: list[bytes | None] = list(map(self.vocab.get, range(size)))
        self._cache: dict[str, tuple[int, ...]] = {}
        self._c_special_pairs: dict[tuple[str, ...], tuple[tuple[bytes, int], ...]] = {}
        self._backend_request = backend
        self._fast = make_encoder(backend, self._byte_ids, self._merge_triples)

    @property
    def _ranks(self) -> dict[tuple[int, int], int]:
        """(left id, right id) -> rank, the first rank of a pair given twice (the pure-Python encoder's)."""
        if self._ranks_built is None:
            ranks: dict[tuple[int, int], int] = {}
            for rank, (a, b, _) in enumerate(self._merge_triples):
                ranks.setdefault((a, b), rank)
            self._ranks_built = ranks
        return self._ranks_built

    @property
    def backend(self) -> str:
        """The encoder in use: "c" or "python"."""
        return "python" if self._fast is None else "c"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fast"] = None  # a C object: rebuilt on unpickling (spawned workers)
        state["_cache"] = {}  # workers build their own; not worth pickling
        state["_ranks_built"] = None  # rebuilt on first use, by the pure-Python encoder only
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_c_special_pairs", {})  # pickled before it existed
        self.__dict__.pop("_ranks", None)  # pickled when the ranks were an attribute, now made on first use
        self.__dict__.setdefault("_ranks_built", None)
        self._backend_request = state.get("_backend_request", AUTO)
        self._fast = make_encoder(self._backend_request, self._byte_ids, self._merge_triples)

    def for_thread(self) -> "Tokenizer":
        """A copy with its own C encoder (its own pre-token cache and work buffers), for another thread.

        One C encoder serves one thread at a time (its cache is guarded by a lock, held while it
        encodes with the GIL released), so threads that encode in parallel each take a copy. The
        vocabulary, merges and special-token matcher are shared, read-only. Costs one encoder build
        (about the time of loading the merges). The pure-Python backend returns a plain copy.
        """
        clone = copy.copy(self)
        clone._cache = {}
        clone._fast = make_encoder(self._backend_request, self._byte_ids, self._merge_triples) if self._fast is not None else None
        return clone

    # --- construction and files -----------------------------------------------------------
    @classmethod
    def from_files(
        cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike, special_tokens: list[str] | None = None, *, backend: str = AUTO
    ) -> "Tokenizer":
        """Load GPT-2-format vocab.json and merges.txt (as written by tinylm, GPT-2 or HF tokenizers).

        A Tokenizer loaded once from these files' bytes is kept pickled in the tokenizer cache
        (tinylm.tokenizer.load_cache: ~/.cache/tinylm/tokenizers, $TINYLM_CACHE_DIR; "off" turns
        it off) and read from there next time: about 0.03 s instead of 0.13 s for GPT-2's files.
        """
        from tinylm.tokenizer.load_cache import cached_load

        check_backend(backend)
        specials = None if special_tokens is None else list(special_tokens)  # one order for the key and the build

        def build() -> "Tokenizer":
            vocab, merges = load_vocab_and_merges(vocab_path, merges_path, specials)
            return cls(vocab, merges, specials, backend=backend)

        how = f"from_files special_tokens={specials!r}"
        return cached_load(cls, (vocab_path, merges_path), how, backend, build)

    def save(self, vocab_path: str | os.PathLike, merges_path: str | os.PathLike) -> None:
        save_vocab(self.vocab, vocab_path, self.special_tokens)
        save_merges(self.merges, merges_path)

    @classmethod
    def from_dir(cls, folder: str | os.PathLike, special_tokens: list[str] | None = None, *, backend: str = AUTO) -> "Tokenizer":
        """Load a tokenizer folder: vocab.json, merges.txt and (when present) special_tokens.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputFileError(f"tokenizer folder not found: {folder} (expected vocab.json and merges.txt in it)")
        if special_tokens is None:
            special_tokens = load_special_tokens(folder / SPECIAL_TOKENS_FILE)
        return cls.from_files(folder / VOCAB_FILE, folder / MERGES_FILE, special_tokens, backend=backend)

    def save_dir(self, folder: str | os.PathLike) -> Path:
        """Write vocab.json, merges.txt, special_tokens.json, tokenizer.json and tokenizer.tiktoken into a folder."""
        folder = ensure_output_dir(folder)
        atomic_write_files({folder / name: data for name, data in tokenizer_folder_files(self.vocab, self.merges, self.special_tokens).items()})
        return folder

    @property
    def vocab_size(self) -> int:
        return len(self._decode_table)

    # --- encoding --------------------------------------------------------------------------
    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Apply merges to one pre-token, lowest rank first (as GPT-2 and tiktoken do)."""
        byte_ids = self._byte_ids
        ids = [byte_ids[b] for b in piece.encode("utf-8")]
        get = self._ranks.get
        triples = self._merge_triples
        no_merge = len(triples)
        while len(ids) > 1:
            rank = min(map(get, zip(ids, ids[1:]), repeat(no_merge)))
            if rank == no_merge:
                break
            a, b, new_id = triples[rank]
            out = []
            i = 0
            n = len(ids)
            while i < n:  # every occurrence, leftmost first, never overlapping ("aaa" -> "aa a")
                if ids[i] == a and i < n - 1 and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return tuple(ids)

    def _encode_ordinary_pieces(self, pieces: list[str]) -> Iterator[tuple[int, ...]]:
        cache = self._cache
        found = list(map(cache.get, pieces))
        if None in found:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            for i, ids in enumerate(found):
                if ids is None:
                    piece = pieces[i]
                    ids = cache.get(piece)
                    if ids is None:
                        ids = cache[piece] = self._bpe(piece)
                    found[i] = ids
        return found

    def _ordinary(self, text: str) -> list[int]:
        """Ids of text with no special-token handling; UnicodeEncodeError on lone surrogates."""
        if self._fast is not None:
            return self._fast.encode_ordinary(text)
        return list(chain.from_iterable(self._encode_ordinary_pieces(pretokenize(text))))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode treating special-token strings as plain text (safe for untrusted input)."""
        try:
            return self._ordinary(text)
        except UnicodeEncodeError:
            return self.encode_ordinary(_replace_lone_surrogates(text))

    def _special_plan(self, allowed_special, disallowed_special) -> _SpecialPlan:
        """Resolve encode's allowed/disallowed_special once (ConfigError for unknown allowed tokens).

        Cost: O(1) for the defaults, O(tokens named) otherwise; each distinct set's matcher is
        built once (special_matcher keeps them).
        """
        if allowed_special == "all":
            allowed = self._special_set
        else:
            allowed = frozenset(allowed_special)
            unknown = allowed - self._special_set
            if unknown:
                raise ConfigError(f"allowed_special names tokens that are not special tokens of this tokenizer: {sorted(unknown)}")
        if disallowed_special == "all":
            disallowed = self._special_set if not allowed else self._special_set - allowed
        else:
            disallowed = frozenset(disallowed_special) - allowed
        boundaries = self._special_set if disallowed <= self._special_set else self._special_set | disallowed
        return _SpecialPlan(self._matcher(allowed), self._matcher(disallowed), self._matcher(boundaries))

    def _matcher(self, tokens: frozenset[str]) -> SpecialTokenMatcher:
        """This tokenizer's own matcher for its full set (never evicted from a cache), else the shared one."""
        return self._special_matcher if tokens is self._special_set else special_matcher(tokens)

    @staticmethod
    def _check_disallowed(text: str, disallowed: SpecialTokenMatcher) -> None:
        m = disallowed.search(text)
        if m:
            raise SpecialTokenNotAllowedError(
                f"text contains the special token {m.group()!r} at character {m.start()}; pass it in allowed_special to "
                f"encode it as a special token, or disallowed_special=() to encode it as plain text"
            )

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Collection[str] = "all",
        disallowed_special: Literal["all"] | Collection[str] = (),
    ) -> list[int]:
        """Encode text to ids.

        By default every special token of this tokenizer found in the text becomes its id
        (longest match first). For untrusted text use `allowed_special=set()` with
        `disallowed_special="all"` (raise SpecialTokenNotAllowedError if any appears, as
        tiktoken does by default) or `encode_ordinary` (treat them as plain text).
        Lone surrogates (not encodable as UTF-8) are encoded as U+FFFD, as tiktoken does.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        return self._encode_planned(text, self._special_plan(allowed_special, disallowed_special))

    def _encode_planned(self, text: str, plan: _SpecialPlan, itemsize: int = 0) -> list[int] | PackedIds:
        try:
            return self._encode(text, plan, itemsize)
        except UnicodeEncodeError:
            return self._encode(_replace_lone_surrogates(text), plan, itemsize)

    def _encode(self, text: str, plan: _SpecialPlan, itemsize: int = 0) -> list[int] | PackedIds:
        """The ids of text under plan: a list, or with itemsize 2 / 4 (C encoder only) packed as
        little-endian uint16 / uint32 for numpy.frombuffer. UnicodeEncodeError on lone surrogates."""
        specials = self._c_specials(plan.allowed)
        if specials is not None:  # one C call: the cuts at special tokens, the pre-tokens and the ids
            if plan.disallowed:
                self._check_disallowed(text, plan.disallowed)
            return self._fast.encode(text, specials, itemsize)
        out: list[int] = []
        for piece in self._segments(text, plan):
            if isinstance(piece, int):
                out.append(piece)
            else:
                out.extend(self._ordinary(piece))
        return out

    def _c_specials(self, allowed: SpecialTokenMatcher) -> tuple[tuple[bytes, int], ...] | None:
        """The allowed special tokens as (UTF-8 bytes, id) pairs for the C encoder's own cutting
        (Encoder.encode: leftmost, then longest, as SpecialTokenMatcher), or None without a C
        encoder (the Python path). Special tokens are valid UTF-8 (checked in __init__). Kept per token set."""
        if self._fast is None:
            return None
        pairs = self._c_special_pairs.get(allowed.tokens)
        if pairs is None:
            pairs = self._c_special_pairs[allowed.tokens] = tuple((t.encode("utf-8"), self.special_to_id[t]) for t in allowed.tokens)
        return pairs

    def _segments(self, text: str, plan: _SpecialPlan) -> Iterator[str | int]:
        """The text cut at allowed special tokens: ordinary text (str) and special token ids (int), in order.

        Tokens are taken leftmost first, and of those starting at one place the longest
        (SpecialTokenMatcher). SpecialTokenNotAllowedError first if a disallowed token occurs.
        """
        if plan.disallowed:
            self._check_disallowed(text, plan.disallowed)
        pos = 0
        for m in plan.allowed.finditer(text):
            if m.start() > pos:
                yield text[pos : m.start()]
            yield self.special_to_id[m.group()]
            pos = m.end()
        if pos < len(text):
            yield text[pos:]

    def encode_to_numpy(self, text: str, dtype=None, **encode_kwargs) -> np.ndarray:
        """encode(text) as a NumPy array (uint16 when the vocabulary fits, else uint32).

        With the C encoder the ids go straight into the array's memory, never through a list of
        Python ints: about 1.9× faster than np.asarray(encode(text)) on a 4 MB chunk (warm cache).
        """
        dtype = np.dtype(dtype if dtype is not None else token_dtype(len(self._decode_table)))
        if self._fast is None or dtype not in (np.dtype("<u2"), np.dtype("<u4")):
            return np.asarray(self.encode(text, **encode_kwargs), dtype=dtype)
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        allowed, disallowed = encode_kwargs.pop("allowed_special", "all"), encode_kwargs.pop("disallowed_special", ())
        if encode_kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(encode_kwargs)}")
        # the C encoder packs the ids straight into the array's buffer: one call, no list
        return np.frombuffer(self._encode_planned(text, self._special_plan(allowed, disallowed), dtype.itemsize), dtype=dtype)

    def encode_utf8_to_numpy(self, data: bytes | bytearray | memoryview, dtype=None) -> np.ndarray:
        """encode_to_numpy(data.decode("utf-8")) (all special tokens allowed), without making the
        str when the C encoder runs: it checks the bytes are UTF-8 and encodes them as they are
        (for file pieces: decoding and encoding back cost as much as a third of the work).
        UnicodeDecodeError when data is not UTF-8, as bytes.decode raises it."""
        dtype = np.dtype(dtype if dtype is not None else token_dtype(len(self._decode_table)))
        specials = self._c_specials(self._special_plan("all", ()).allowed)
        if specials is not None and dtype in (np.dtype("<u2"), np.dtype("<u4")):
            packed = self._fast.encode_utf8(data, specials, dtype.itemsize)
            if packed is not None:
                return np.frombuffer(packed, dtype=dtype)
        return self.encode_to_numpy(bytes(data).decode("utf-8"), dtype)

    def encode_iterable(
        self,
        iterable: Iterable[str],
        *,
        piece_chars: int = STREAM_PIECE_CHARS,
        allowed_special: Literal["all"] | Collection[str] = "all",
        disallowed_special: Literal["all"] | Collection[str] = (),
    ) -> Iterator[int]:
        """Stream ids from an iterable of strings (e.g. an open file), in bounded memory.

        Yields exactly the ids of encode("".join(iterable), ...) with the same special-token
        arguments, however the strings are cut. Text is buffered until a piece of at least
        piece_chars characters ends at a safe cut (pretokenize.find_safe_cut: before an allowed
        special token, after an isolated newline or before " word", never where any special token
        occurrence would be split), which is then encoded on its own. Text with no safe cut for a
        long stretch (no newline or space before a letter, no special token) is buffered whole.
        A disallowed special token raises SpecialTokenNotAllowedError when its piece is reached,
        after the ids of the pieces before it; so does a TypeError for an item that is not str.
        ConfigError (at the call) for piece_chars < 1 or unknown allowed_special tokens.
        """
        if not isinstance(piece_chars, int) or piece_chars < 1:
            raise ConfigError(f"piece_chars must be a positive integer, got {piece_chars!r}")
        plan = self._special_plan(allowed_special, disallowed_special)
        # The pieces' id lists are flattened by chain in C: a generator step per id would cost
        # more than encoding it.
        return chain.from_iterable(self._encode_pieces(iterable, piece_chars, plan))

    def _encode_pieces(self, iterable: Iterable[str], piece_chars: int, plan: _SpecialPlan) -> Iterator[list[int]]:
        """The ids of each safe piece of the streamed text, in order (see encode_iterable)."""
        for piece in safe_pieces(_only_str(iterable), piece_chars, plan.allowed, plan.boundaries):
            yield self._encode_planned(piece, plan)

    # --- decoding --------------------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        table = self._decode_table
        ids = ids if isinstance(ids, list) else list(ids)
        try:
            parts = [table[i] for i in ids]
            if None in parts or (ids and min(ids) < 0):
                raise IndexError
            return b"".join(parts)
        except (IndexError, TypeError):
            for i in ids:
                if not isinstance(i, int) or i < 0 or i >= len(table) or table[i] is None:
                    raise UnknownTokenError(f"token id {i!r} is not in the vocabulary (size {len(table)})") from None
            raise

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text; invalid UTF-8 (e.g. a cut multi-byte char) becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special_tokens={self.special_tokens})"

    # --- other tools' files (tokenizer.json, .tiktoken) --------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike, *, backend: str = AUTO) -> "Tokenizer":
        """Load a Hugging Face tokenizer.json (byte-level BPE), e.g. GPT-2's or one tinylm wrote.

        Ids are the ones `tokenizers` gives; every added token becomes a special token.
        TokenizerFileError names content tinylm cannot reproduce (other models, normalizers,
        prefix spaces, post-processors adding tokens). For a .tiktoken file use from_tiktoken.
        """
        from tinylm.tokenizer.hf_json import load_tokenizer_json

        if str(path).endswith(".tiktoken"):
            raise ConfigError(f"{path} is a tiktoken rank file: load it with Tokenizer.from_tiktoken(path, pattern=..., special_tokens=...)")
        from tinylm.tokenizer.load_cache import cached_load

        check_backend(backend)

        def build() -> "Tokenizer":
            vocab, merges, specials = load_tokenizer_json(path)
            return cls(vocab, merges, specials, backend=backend)

        return cached_load(cls, (path,), "from_file", backend, build)

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        *,
        pattern: str = "gpt2",
        special_tokens: dict[str, int] | list[str] | None = None,
        backend: str = AUTO,
    ) -> "Tokenizer":
        """Load a tiktoken rank file (`base64 rank` lines) with a named pre-tokenizer pattern.

        pattern: "gpt2" (also "r50k_base", "p50k_base"; tinylm's encoders implement GPT-2's
        pattern only, others are a ConfigError). special_tokens: {text: id} as tiktoken takes
        them, or a list placed after the last rank. Ids equal tiktoken.Encoding's built from the
        same file, pattern and special tokens.
        """
        from tinylm.tokenizer.tiktoken_file import load_tiktoken_ranks, merges_from_ranks, pattern_by_name, tiktoken_vocab

        pattern_by_name(pattern)
        ranks = load_tiktoken_ranks(path)
        vocab, specials = tiktoken_vocab(ranks, special_tokens, f"tiktoken file {path}")
        return cls(vocab, merges_from_ranks(ranks), specials, backend=backend)

    def save_tokenizer_json(self, path: str | os.PathLike) -> None:
        """Write a Hugging Face tokenizer.json (loads in `tokenizers` and `transformers`)."""
        from tinylm.tokenizer.hf_json import tokenizer_json_bytes

        atomic_write_files({path: tokenizer_json_bytes(self.vocab, self.merges, self.special_tokens)})

    def save_tiktoken(self, path: str | os.PathLike) -> None:
        """Write a tiktoken rank file (ordinary tokens; rank = id). See docs/TOKENIZER.md for the Encoding."""
        from tinylm.tokenizer.tiktoken_file import tiktoken_bytes

        atomic_write_files({path: tiktoken_bytes(self.vocab, self.special_tokens)})
