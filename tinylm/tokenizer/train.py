"""Byte-level BPE training: parallel pre-token counting, then an incremental merge loop.

Counting reads the corpus in chunks cut at special tokens (or other provably safe places), so
memory depends on the number of distinct pre-tokens, not on the file's size; worker processes
count chunks in parallel. The merge loop keeps pair counts, an index pair -> words holding it,
and a lazy max-heap whose entries compare as (count, tie-break bytes) entirely in C.
"""

from __future__ import annotations

import heapq
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinylm.errors import ConfigError, InputFileError, InvalidUTF8Error
from tinylm.tokenizer.pretokenize import (
    find_safe_cut,
    pretokenize,
    special_token_regex,
    split_on_special,
    validate_special_tokens,
)

DEFAULT_CHUNK_BYTES = 4 << 20
_SCAN_WINDOW = 1 << 20


@dataclass
class TrainStats:
    """What training measured, for the command's report."""

    input_bytes: int = 0
    distinct_pretokens: int = 0
    count_seconds: float = 0.0
    merge_seconds: float = 0.0
    num_merges: int = 0
    extra: dict = field(default_factory=dict)


def check_input_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"input file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"input path is a directory, not a file: {p}")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise InputFileError(f"cannot read input file {p}: {exc.strerror}") from None
    if size == 0:
        raise InputFileError(f"input file is empty: {p}")
    return p


def chunk_ranges(path: str | os.PathLike, special_tokens: list[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """Byte ranges covering the file, each about chunk_bytes, cut only at safe places.

    Only a small window around each tentative cut is read, so this is cheap on any file size.
    """
    special_bytes = [t.encode("utf-8") for t in special_tokens]
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            probe = pos + chunk_bytes
            if probe >= size:
                yield pos, size
                return
            cut = -1
            window_start = probe
            while cut == -1 and window_start < size:
                f.seek(window_start)
                # Overlap by the longest special token so a token across windows is still seen.
                overlap = max((len(t) for t in special_bytes), default=1)
                buf = f.read(_SCAN_WINDOW + overlap)
                found = find_safe_cut(buf, special_bytes, 1)
                if found != -1 and found <= _SCAN_WINDOW:
                    cut = window_start + found
                else:
                    window_start += _SCAN_WINDOW
            if cut == -1:
                yield pos, size
                return
            yield pos, cut
            pos = cut


def read_text_range(path: str | os.PathLike, start: int, end: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUTF8Error(path, start + exc.start, exc.reason) from None


def _count_range(args) -> tuple[int, dict[str, int]]:
    path, start, end, special_tokens = args
    text = read_text_range(path, start, end)
    special_re = special_token_regex(special_tokens)
    counts: Counter[str] = Counter()
    for piece in split_on_special(text, special_re):
        if piece:
            counts.update(pretokenize(piece))
    return end - start, counts


def _pool_context():
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: list[str],
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
) -> Counter[str]:
    """Pre-token frequencies of a whole file, counted in worker processes over safe chunks."""
    from tqdm import tqdm

    path = str(check_input_file(path))
    size = os.path.getsize(path)
    workers = num_workers or os.cpu_count() or 1
    tasks = ((path, s, e, special_tokens) for s, e in chunk_ranges(path, special_tokens, chunk_bytes))
    total: Counter[str] = Counter()
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="counting pre-tokens", disable=not progress, leave=False)
    with bar:
        if workers <= 1 or size <= chunk_bytes:
            for task in tasks:
                n, counts = _count_range(task)
                total.update(counts)
                bar.update(n)
        else:
            with _pool_context().Pool(workers) as pool:
                for n, counts in pool.imap_unordered(_count_range, tasks):
                    total.update(counts)
                    bar.update(n)
    return total


def _tie_key(token: bytes) -> bytes:
    """Bytes whose ascending order is the descending order of `token`, prefix-free.

    Each byte b becomes (1, 255-b) and a 2 terminates the token, so comparing the keys of
    (a, b) pairs, concatenated, orders pairs lexicographically greatest-first, in C.
    """
    out = bytearray()
    for byte in token:
        out += bytes((1, 255 - byte))
    out.append(2)
    return bytes(out)


def _merge_word(word: list[int], a: int, b: int, new_id: int) -> list[int]:
    out: list[int] = []
    i = 0
    n = len(word)
    while True:
        try:
            j = word.index(a, i)
        except ValueError:
            out.extend(word[i:])
            return out
        if j + 1 < n and word[j + 1] == b:
            out.extend(word[i:j])
            out.append(new_id)
            i = j + 2
        else:
            out.extend(word[i : j + 1])
            i = j + 1


def bpe_merges(word_counts: dict[bytes, int], num_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """Learn up to num_merges merges over words (byte strings with frequencies).

    Ids 0..255 are the bytes; merge k creates id 256+k. Returns the merged id pairs in order.
    Each step takes the most frequent pair, ties to the lexicographically greatest (bytes, bytes).
    """
    from tqdm import tqdm

    words: list[list[int]] = []
    freqs: list[int] = []
    pair_counts: dict[tuple[int, int], int] = {}
    pair_words: dict[tuple[int, int], list[int]] = {}
    for wi, (word, freq) in enumerate(word_counts.items()):
        ids = list(word)
        words.append(ids)
        freqs.append(freq)
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + freq
            lst = pair_words.get(pair)
            if lst is None:
                pair_words[pair] = [wi]
            elif lst[-1] != wi:
                lst.append(wi)

    token_bytes: list[bytes] = [bytes([i]) for i in range(256)]
    tie: list[bytes] = [_tie_key(t) for t in token_bytes]
    heap = [(-c, tie[a] + tie[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    bar = tqdm(total=num_merges, desc="merging", unit="merge", disable=not progress, leave=False)
    with bar:
        while len(merges) < num_merges and heap:
            neg, key, a, b = heapq.heappop(heap)
            actual = pair_counts.get((a, b), 0)
            if actual != -neg:
                if actual > 0:  # counts only fall after a pair's creation step: re-file lazily
                    heapq.heappush(heap, (-actual, key, a, b))
                continue
            new_id = len(token_bytes)
            merges.append((a, b))
            token_bytes.append(token_bytes[a] + token_bytes[b])
            tie.append(_tie_key(token_bytes[-1]))
            delta: dict[tuple[int, int], int] = {}
            for wi in set(pair_words.pop((a, b))):
                word = words[wi]
                if a not in word:
                    continue
                merged = _merge_word(word, a, b, new_id)
                if len(merged) == len(word):
                    continue
                f = freqs[wi]
                for pair in zip(word, word[1:]):
                    delta[pair] = delta.get(pair, 0) - f
                for pair in zip(merged, merged[1:]):
                    delta[pair] = delta.get(pair, 0) + f
                    if pair[0] == new_id or pair[1] == new_id:
                        lst = pair_words.get(pair)
                        if lst is None:
                            pair_words[pair] = [wi]
                        elif lst[-1] != wi:
                            lst.append(wi)
                words[wi] = merged
            for pair, d in delta.items():
                if d == 0:
                    continue
                count = pair_counts.get(pair, 0) + d
                if count > 0:
                    pair_counts[pair] = count
                    if d > 0:  # only pairs that hold the new token grow; file them now
                        heapq.heappush(heap, (-count, tie[pair[0]] + tie[pair[1]], pair[0], pair[1]))
                else:
                    pair_counts.pop(pair, None)
                    pair_words.pop(pair, None)
            bar.update(1)
    return merges


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str] | None = None,
    *,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
    stats: TrainStats | None = None,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a text file.

    Returns (vocab id -> token bytes, merges in creation order). Ids: special tokens first, then
    the 256 bytes, then merged tokens. `vocab_size` counts all three.
    """
    special_tokens = validate_special_tokens(special_tokens)
    if not isinstance(vocab_size, int) or vocab_size < 256 + len(special_tokens):
        raise ConfigError(
            f"vocab_size must be at least 256 + {len(special_tokens)} special token(s) = "
            f"{256 + len(special_tokens)}, got {vocab_size}"
        )
    if chunk_bytes < 1:
        raise ConfigError(f"chunk_bytes must be positive, got {chunk_bytes}")
    stats = stats if stats is not None else TrainStats()
    path = check_input_file(input_path)
    stats.input_bytes = path.stat().st_size

    t0 = time.perf_counter()
    counts = count_pretokens(path, special_tokens, num_workers, chunk_bytes, progress)
    word_counts = {w.encode("utf-8"): c for w, c in counts.items()}
    del counts
    stats.distinct_pretokens = len(word_counts)
    t1 = time.perf_counter()
    stats.count_seconds = t1 - t0

    num_merges = vocab_size - 256 - len(special_tokens)
    id_merges = bpe_merges(word_counts, num_merges, progress)
    stats.merge_seconds = time.perf_counter() - t1
    stats.num_merges = len(id_merges)

    internal: list[bytes] = [bytes([i]) for i in range(256)]
    merges: list[tuple[bytes, bytes]] = []
    for a, b in id_merges:
        merges.append((internal[a], internal[b]))
        internal.append(internal[a] + internal[b])
    vocab: dict[int, bytes] = {i: tok.encode("utf-8") for i, tok in enumerate(special_tokens)}
    offset = len(special_tokens)
    for i, tok in enumerate(internal):
        vocab[offset + i] = tok
    return vocab, merges
