"""Byte-level BPE training: parallel pre-token counting, then an incremental merge loop.

Counting reads the corpus in chunks cut at special tokens (or other provably safe places), so
memory depends on the number of distinct pre-tokens, not on the file's size; worker processes
count chunks in parallel. The merge loop keeps pair counts, an index pair -> words holding it,
and a lazy max-heap whose entries compare as (count, tie-break bytes) entirely in C.

    trained = BpeTrainer(vocab_size=10_000, special_tokens=["<|endoftext|>"]).train("corpus.txt")
    trained.tokenizer.save_dir("tokenizer"); print(trained.stats)

BpeTrainer holds the settings (validated once, like Hugging Face `tokenizers`' BpeTrainer);
train_bpe(...) is the course-compatible function on top, returning (vocab, merges).
"""

from __future__ import annotations

import heapq
import os
import re
import struct
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from tinylm.errors import ConfigError
from tinylm.io import check_input_file
from tinylm.tokenizer._native import AUTO, C, COUNT_BACKENDS, MERGE_BACKENDS, PYTHON, check_choice, compiled_merge_loop, make_encoder, pretoken_counter
from tinylm.tokenizer.bpe import Tokenizer
from tinylm.tokenizer.chunking import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_SCAN_BYTES,
    chunk_ranges,
    corpus_units,
    decode_range,
    map_pieces,
    read_range,
    read_text_range,
    text_pieces,
    unit_disk_bytes,
    unit_text,
)
from tinylm.tokenizer.spill import SpillingCounter
from tinylm.tokenizer.pretokenize import (
    SpecialTokenMatcher,
    pretokenize,
    special_matcher,
    split_on_special,
    validate_special_tokens,
)



@dataclass
class TrainStats:
    """What training measured, for the command's report (BpeTrainer.train returns it beside the tokenizer).

    input_bytes: size of the corpus; distinct_pretokens: entries of the counted table; *_seconds:
    wall time of counting (reading, pre-tokenizing, counting, packing) and of the merge loop;
    spill_runs: times the table went to disk under max_memory; *_backend: "c" or "python", what ran.
    """

    input_bytes: int = 0
    distinct_pretokens: int = 0
    count_seconds: float = 0.0
    merge_seconds: float = 0.0
    num_merges: int = 0
    spill_runs: int = 0
    merge_backend: str = ""
    count_backend: str = ""
    extra: dict = field(default_factory=dict)


_COUNTER_LOCK = threading.Lock()


def count_text(text: str, special_re: SpecialTokenMatcher | re.Pattern | None, backend: str = AUTO) -> dict[bytes, int]:
    """Pre-token counts of text (UTF-8 bytes -> count), split on special tokens first.

    special_re: the special tokens' matcher (special_matcher) or compiled pattern (special_token_regex),
    or None; text between tokens is taken as Tokenizer.encode takes it (leftmost, longest first).

    With the C extension built the GPT-2 pattern is matched and counted in C (the same matcher as
    the C encoder, fuzzed against `regex`); backend="python" uses pretokenize and a Counter.
    """
    return count_texts([text], special_re, backend)


def count_texts(texts: Iterable[str], special_re: SpecialTokenMatcher | re.Pattern | None, backend: str = AUTO,
                packed: bool = False) -> dict[bytes, int] | bytes:
    """count_text of all `texts` together (each split on special tokens on its own), read lazily.

    With the C counter every text is counted into one table that is taken once at the end, so the
    Python dict work is proportional to the distinct pre-tokens of all the texts, not of each one
    (profiled: building and merging a dict per 4 MB piece was a third of the counting time).
    A text with lone surrogates (never one decoded from a file) is counted by the Python path.
    `packed` (C counter only; the Python path returns a dict): the counts as the C counter's packed
    bytes (take_counts_packed), to hand to another process's counter (add_counts_packed).
    """
    counter = pretoken_counter() if backend != PYTHON else None
    if counter is None:
        counts: Counter[str] = Counter()
        for text in texts:
            for piece in split_on_special(text, special_re):
                if piece:
                    counts.update(pretokenize(piece))
        return {k.encode("utf-8", "surrogatepass"): v for k, v in counts.items()}
    aside: Counter[bytes] = Counter()  # texts the C counter cannot take
    with _COUNTER_LOCK:  # one count-then-take at a time: the table is this process's, shared by its threads
        counter.reset_counts()  # whatever an earlier call left (the finally below makes that rare)
        try:
            for text in texts:
                for piece in split_on_special(text, special_re):  # lazily: no list of the text's pieces
                    if not piece:
                        continue
                    try:
                        counter.count_pretokens(piece)
                    except UnicodeEncodeError:  # lone surrogates: this piece by the Python path
                        aside.update(count_texts([piece], None, PYTHON))
            if aside:
                counter.add_counts_packed(pack_counts(aside))
            counts = counter.take_counts_packed() if packed else counter.take_counts()
        finally:
            counter.reset_counts()  # nothing left behind for the next call, whatever stopped this one
    return counts


def pack_counts(counts: dict[bytes, int]) -> bytes:
    """counts in the C counter's packed layout (take_counts_packed): uint32 length, int64 count, bytes."""
    return b"".join(struct.pack("=Iq", len(key), n) + key for key, n in counts.items())


def _count_ranges(args) -> tuple[int, dict[bytes, int] | bytes]:
    path, ranges, special_tokens, backend, packed = args
    size = sum(end - start for start, end in ranges)
    counter = pretoken_counter() if backend != PYTHON else None
    if counter is not None:
        return size, count_file_ranges(counter, path, ranges, special_tokens, packed)
    # special_matcher keeps one matcher per token set: built once per process, not once per range
    texts = (read_text_range(path, start, end) for start, end in ranges)
    return size, count_texts(texts, special_matcher(special_tokens), backend, packed)


def count_file_ranges(counter, path: str | os.PathLike, ranges: list[tuple[int, int]], special_tokens: Iterable[str],
                      packed: bool = False) -> dict[bytes, int] | bytes:
    """count_texts of the file's byte ranges, counted by the C counter straight from the bytes.

    Encoder.count_pretokens_utf8 checks that each range is UTF-8, cuts it at the special tokens and
    counts it with no str made (decoding, splitting on special tokens in Python and encoding back
    to UTF-8 took half of a worker's time). A range that is not UTF-8 is decoded to raise
    InvalidUTF8Error at the right offset (and, should Python take what the C check refused,
    counted as text). Same counts as count_texts over read_text_range.
    """
    specials = tuple((t.encode("utf-8"), 0) for t in sorted(special_tokens))
    with _COUNTER_LOCK:  # the table is this process's, shared by its threads
        counter.reset_counts()
        try:
            for start, end in ranges:
                data = read_range(path, start, end)
                if not counter.count_pretokens_utf8(data, specials):
                    text = decode_range(data, path, start)
                    for piece in split_on_special(text, special_matcher(frozenset(special_tokens))):
                        if piece:
                            counter.count_pretokens(piece)
            return counter.take_counts_packed() if packed else counter.take_counts()
        finally:
            counter.reset_counts()


# A counting task is a run of consecutive pieces of at most this many bytes (and at least two tasks per
# worker): the worker counts them into one table and hands back its counts once (packed bytes), so what
# is built, pickled and merged shrinks with the task size; the worker's table is bounded by the distinct
# pre-tokens of one task. Measured on bench_en x 20 (2.1 GB, 2 workers, BPE 10K, medians of 2), once
# counting ran from UTF-8 bytes into the inline table: 16 MB tasks 7.81 s / 143 MB, 32 MB 7.13 s / 164 MB,
# 64 MB 6.78-6.92 s / 176 MB (the parent's merging of packed counts shrinks with fewer, larger tasks).
# Earlier, with the slower counter: 64 MB 16.6 s / 255 MB, 16 MB 16.5 s / 183 MB.
TASK_BYTES = 64 << 20


def group_ranges(ranges: list[tuple[int, int]], workers: int, size: int, task_bytes: int = TASK_BYTES) -> list[list[tuple[int, int]]]:
    """Consecutive ranges grouped into tasks of at most max(one range, task_bytes, or size / (2 × workers)) bytes."""
    limit = max(1, min(task_bytes, size // max(1, 2 * workers)))
    groups: list[list[tuple[int, int]]] = []
    for start, end in ranges:
        if groups and groups[-1][-1][1] - groups[-1][0][0] + (end - start) <= limit:
            groups[-1].append((start, end))
        else:
            groups.append([(start, end)])
    return groups


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: list[str],
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
    max_memory: int | None = None,
    spill_dir: str | os.PathLike | None = None,
    backend: str = AUTO,
    scan_bytes: int = DEFAULT_SCAN_BYTES,
) -> SpillingCounter:
    """Pre-token frequencies of a whole file, counted in worker processes over safe chunks.

    The chunks (chunking.chunk_ranges: at least chunk_bytes, cut where counting apart equals
    counting the whole, searched in windows of scan_bytes) give exactly count_text(whole file).

    With max_memory (bytes), the table of distinct pre-tokens is spilled to sorted files on disk
    whenever it would grow past the budget, and merged back when read. backend: "auto" (the C
    pre-tokenizer when built) or "python" (count_text).
    """
    from tinylm.progress import progress_bar

    path = str(check_input_file(path))
    size = os.path.getsize(path)
    workers = num_workers or os.cpu_count() or 1
    check_choice("count", backend, COUNT_BACKENDS)
    if backend != PYTHON:
        pretoken_counter()  # built before the pool forks: workers inherit it (and its Unicode tables) instead of rebuilding it
    tokens = frozenset(special_tokens)
    special_matcher(tokens).pattern(str)  # compiled before the pool forks: workers inherit it
    serial = workers <= 1 or size <= chunk_bytes
    ranges = list(chunk_ranges(path, special_tokens, chunk_bytes, scan_bytes=scan_bytes))
    # one range per task when memory is budgeted (the worker's table stays the size of one piece's)
    groups = [[r] for r in ranges] if max_memory is not None else group_ranges(ranges, 1 if serial else workers, size)
    # without a memory budget the tasks' counts travel packed and are summed in a C counter, read once at the end
    merger = make_encoder(AUTO, list(range(256)), []) if max_memory is None and backend != PYTHON else None
    tasks = [(path, group, tokens, backend, merger is not None) for group in groups]
    total = SpillingCounter(max_memory, spill_dir)
    try:
        with map_pieces(_count_ranges, tasks, 1 if serial else workers, ordered=False) as results, \
                progress_bar(total=size, unit="B", unit_scale=True, desc="counting pre-tokens", disable=not progress, leave=False) as bar:
            for n, counts in results:
                if merger is None:
                    total.update(counts)
                else:
                    merger.add_counts_packed(counts if isinstance(counts, bytes) else pack_counts(counts))
                bar.update(n)
        if merger is not None:
            total.update(merger.take_counts())
    except BaseException:
        total.close()
        raise
    return total


def _count_unit(args) -> tuple[int, int, int, dict[bytes, int], object, bool]:
    """(index, disk bytes, text bytes, pre-token counts, ReadStats, whether it opens with its separator)
    of one unit of a corpus (chunking.corpus_units)."""
    from tinylm.corpus import ReadStats

    index, unit, options, special_tokens, chunk_bytes, backend = args
    matcher, read = special_matcher(special_tokens), ReadStats()
    sizes = []

    def pieces():
        for piece in text_pieces(unit_text(unit, options, read, first=index == 0), special_tokens, chunk_bytes):
            sizes.append(len(piece.encode("utf-8", "surrogatepass")))
            yield piece

    counts = count_texts(pieces(), matcher, backend)
    led = index > 0 and bool(unit[0].lead) and read.documents > 0  # its text opens with the separator
    return index, unit_disk_bytes(unit), sum(sizes), counts, read, led


def count_corpus_pretokens(
    spec: str | os.PathLike,
    special_tokens: list[str],
    options=None,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
    max_memory: int | None = None,
    spill_dir: str | os.PathLike | None = None,
    backend: str = "auto",
    scan_bytes: int = DEFAULT_SCAN_BYTES,
) -> tuple[SpillingCounter, object, int]:
    """count_pretokens over a corpus of shards (tinylm.corpus: .txt, JSON Lines, Parquet, compressed;
    a file, folder or glob): (counts, ReadStats, text bytes). The counts equal count_pretokens on
    the corpus converted to one .txt file (documents joined by options.separator). Units of the
    corpus (chunking.corpus_units) are counted in worker processes; options: a
    tinylm.corpus.ReadOptions (default: field "text", bad records are errors).
    """
    from tinylm.corpus import ReadOptions, ReadStats
    from tinylm.progress import progress_bar

    options = options or ReadOptions()
    check_choice("count", backend, COUNT_BACKENDS)
    units = corpus_units(spec, options, special_tokens, chunk_bytes, scan_bytes=scan_bytes)
    if backend != PYTHON:
        pretoken_counter()  # built before the pool forks
    tokens = frozenset(special_tokens)
    special_matcher(tokens).pattern(str)
    tasks = [(i, unit, options, tokens, chunk_bytes, backend) for i, unit in enumerate(units)]
    total, read, text_bytes, openers = SpillingCounter(max_memory, spill_dir), ReadStats(), 0, {}
    try:
        with map_pieces(_count_unit, tasks, min(num_workers or os.cpu_count() or 1, len(tasks)), ordered=False) as results, \
                progress_bar(total=sum(map(unit_disk_bytes, units)), unit="B", unit_scale=True, desc="counting pre-tokens",
                             disable=not progress, leave=False) as bar:
            for index, disk_bytes, n, counts, unit_read, led in results:
                total.update(counts)
                read.merge(unit_read)
                text_bytes += n
                if unit_read.documents:
                    openers[index] = led
                bar.update(disk_bytes)
    except BaseException:
        total.close()
        raise
    if openers and openers[min(openers)]:  # the first unit with documents opened with a separator the text does not have
        text_bytes -= len(options.separator.encode("utf-8"))
    return total, read, text_bytes


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


def bpe_merges(word_counts: dict[bytes, int], num_merges: int, progress: bool = False) -> list[tuple[int, int]]:
    """Learn up to num_merges merges over words (byte strings with frequencies).

    Ids 0..255 are the bytes; merge k creates id 256+k. Returns the merged id pairs in order.
    Each step takes the most frequent pair, ties to the lexicographically greatest (bytes, bytes).

    A word is held as a str whose characters are token ids (chr(id)), and a pair as the
    2-character str of its two ids: merging is then `str.replace` and finding merge sites
    `str.find`, both in C, which is what makes a pure-Python loop fast enough.
    """
    from tinylm.progress import progress_bar

    words, freqs, pair_counts, pair_words = _index_pairs(word_counts)
    token_bytes: list[bytes] = [bytes([i]) for i in range(256)]
    tie: list[bytes] = [_tie_key(t) for t in token_bytes]
    heap = [(-c, tie[ord(p[0])] + tie[ord(p[1])], p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    with progress_bar(total=num_merges, desc="merging", unit="merge", disable=not progress, leave=False) as bar:
        while len(merges) < num_merges and heap:
            neg, key, ab = heapq.heappop(heap)
            actual = pair_counts.get(ab, 0)
            if actual != -neg:
                if actual > 0:  # counts only fall after a pair's creation step: re-file lazily
                    heapq.heappush(heap, (-actual, key, ab))
                continue
            a, b = ord(ab[0]), ord(ab[1])
            merges.append((a, b))
            token_bytes.append(token_bytes[a] + token_bytes[b])
            tie.append(_tie_key(token_bytes[-1]))
            del pair_counts[ab]
            delta = _merge_in_words(ab, chr(len(token_bytes) - 1), words, freqs, pair_words)
            _file_pair_changes(delta, ab, pair_counts, pair_words, heap, tie)
            bar.update(1)
    return merges


def _index_pairs(word_counts: dict[bytes, int]) -> tuple[list[str], list[int], dict[str, int], dict[str, list[int]]]:
    """The merge loop's state: words (one character per byte id), their frequencies, the count of
    each adjacent pair, and pair -> indices of the words holding it (each word once, ascending)."""
    words: list[str] = []
    freqs: list[int] = []
    pair_counts: dict[str, int] = {}
    pair_words: dict[str, list[int]] = {}
    for wi, (word, freq) in enumerate(word_counts.items()):
        w = word.decode("latin-1")  # one character per byte, chr(byte) == byte id
        words.append(w)
        freqs.append(freq)
        for j in range(len(w) - 1):
            pair = w[j : j + 2]
            pair_counts[pair] = pair_counts.get(pair, 0) + freq
            lst = pair_words.get(pair)
            if lst is None:
                pair_words[pair] = [wi]
            elif lst[-1] != wi:
                lst.append(wi)
    return words, freqs, pair_counts, pair_words


def _merge_in_words(ab: str, c: str, words: list[str], freqs: list[int], pair_words: dict[str, list[int]]) -> dict[str, int]:
    """Replace pair `ab` by the new token `c` in every word holding it; the change of each pair's count.

    Only pairs next to a merge site change: the old neighbours lose the word's frequency, the new
    pairs around the merged token gain it (and are indexed to the word).
    """
    delta: dict[str, int] = {}
    for wi in set(pair_words.pop(ab)):
        w = words[wi]
        j = w.find(ab)
        if j < 0:  # stale index entry: the pair left this word earlier
            continue
        f = freqs[wi]
        n = len(w)
        end = -1
        while j >= 0:
            if j > 0 and j != end:  # left neighbour, unless it was itself just merged
                pair = w[j - 1 : j + 1]
                delta[pair] = delta.get(pair, 0) - f
            if j + 2 < n:
                pair = w[j + 1 : j + 3]
                delta[pair] = delta.get(pair, 0) - f
            end = j + 2
            j = w.find(ab, end)
        w = words[wi] = w.replace(ab, c)
        m = len(w)
        k = w.find(c)
        while k >= 0:
            if k > 0:
                pair = w[k - 1 : k + 1]
                delta[pair] = delta.get(pair, 0) + f
                lst = pair_words.get(pair)
                if lst is None:
                    pair_words[pair] = [wi]
                elif lst[-1] != wi:
                    lst.append(wi)
            if k + 1 < m and w[k + 1] != c:
                pair = w[k : k + 2]
                delta[pair] = delta.get(pair, 0) + f
                lst = pair_words.get(pair)
                if lst is None:
                    pair_words[pair] = [wi]
                elif lst[-1] != wi:
                    lst.append(wi)
            k = w.find(c, k + 1)
    return delta


def _file_pair_changes(
    delta: dict[str, int], ab: str, pair_counts: dict[str, int], pair_words: dict[str, list[int]], heap: list, tie: list[bytes]
) -> None:
    """Apply a merge's count changes; pairs that grew are pushed on the heap, pairs gone are dropped."""
    delta.pop(ab, None)
    for pair, d in delta.items():
        if d == 0:
            continue
        count = pair_counts.get(pair, 0) + d
        if count > 0:
            pair_counts[pair] = count
            if d > 0:  # only pairs that hold the new token grow; file them now
                heapq.heappush(heap, (-count, tie[ord(pair[0])] + tie[ord(pair[1])], pair))
        else:
            pair_counts.pop(pair, None)
            pair_words.pop(pair, None)


class PackedWords:
    """Distinct pre-tokens and their counts in three flat buffers, for the merge loop.

    Word i is blob[ends[i-1]:ends[i]] with count freqs[i]. About 25 bytes per word (its bytes plus
    two int64), where a list of bytes and a list of int cost about 95: with millions of distinct
    pre-tokens this, not the corpus, sets the peak memory of training.
    """

    def __init__(self, items: Iterable[tuple[bytes, int]] = ()):
        self.blob = bytearray()
        self.ends = array("q")
        self.freqs = array("q")
        for word, freq in items:
            self.blob += word
            self.ends.append(len(self.blob))
            self.freqs.append(freq)

    def __len__(self) -> int:
        return len(self.ends)

    def clear(self) -> None:
        """Give the buffers back (the merge loop keeps its own copy)."""
        self.blob, self.ends, self.freqs = bytearray(), array("q"), array("q")

    def items(self) -> Iterator[tuple[bytes, int]]:
        start = 0
        for end, freq in zip(self.ends, self.freqs):
            yield bytes(self.blob[start:end]), freq
            start = end


def run_merges(words: PackedWords, num_merges: int, backend: str = AUTO, progress: bool = False) -> tuple[list[tuple[int, int]], str]:
    """Learn merges with the C loop when available (same merges, ~10x faster), else in Python.

    Returns the merges and the name of the backend that ran. The C loop empties `words` (its
    buffers are freed once the loop has its own copy).
    """
    _check_merge_backend(backend)
    ext = compiled_merge_loop() if backend != PYTHON else None
    if ext is None:
        word_counts = dict(words.items())
        words.clear()
        return bpe_merges(word_counts, num_merges, progress), PYTHON
    from tinylm.progress import progress_bar

    state = ext.prepare_packed(words.blob, words.ends, words.freqs, num_merges)
    words.clear()  # the loop holds its own copy now: ~25 bytes per distinct pre-token back before merging
    with progress_bar(total=num_merges, desc="merging", unit="merge", disable=not progress, leave=False) as bar:
        merges = ext.run(state, lambda n: bar.update(n - bar.n))
    return merges, C


def _check_merge_backend(backend: str) -> None:
    check_choice("merge", backend, MERGE_BACKENDS)
    if backend == C and compiled_merge_loop() is None:
        raise ConfigError("the compiled merge loop is not built (reinstall tinylm with a C compiler present), use --merge-backend python")


class TrainedTokenizer(NamedTuple):
    """What BpeTrainer.train returns: the tokenizer and what training measured."""

    tokenizer: Tokenizer
    stats: TrainStats


@dataclass(frozen=True)
class BpeTrainer:
    """How to train a byte-level BPE tokenizer: every setting, validated once when built.

    The settings object of Hugging Face `tokenizers`' BpeTrainer, for tinylm's trainer:

    vocab_size      all ids: the special tokens first, then the 256 bytes, then one per merge
    special_tokens  never split and never merged across (tuple of str; a list is taken too)
    workers         counting processes; None or 0: os.cpu_count()
    chunk_bytes     the least size of the file pieces workers count (bytes)
    scan_bytes      the window in which a piece's end is searched for a safe cut (bytes)
    max_memory      budget of the pre-token table while counting (bytes, at least 4 KB); past it,
                    counts are spilled to sorted files in spill_dir (default: the system temp folder)
    merge_backend   "auto" (the compiled loop when built), "c" or "python": identical merges
    count_backend   "auto" (pre-tokens matched and counted in C when built) or "python": identical counts
    progress        progress bars on stderr
    read_options    how records of a shard corpus are read (tinylm.corpus.ReadOptions); None: defaults

    Raises ConfigError naming the first bad setting. `train(path)` returns a TrainedTokenizer;
    `learn(path)` the bare (vocab, merges) of train_bpe.
    """

    vocab_size: int
    special_tokens: tuple[str, ...] = ()
    workers: int | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    scan_bytes: int = DEFAULT_SCAN_BYTES
    max_memory: int | None = None
    spill_dir: str | os.PathLike | None = None
    merge_backend: str = AUTO
    count_backend: str = AUTO
    progress: bool = False
    read_options: object = None  # tinylm.corpus.ReadOptions for shard corpora (JSON field, bad records); None: defaults

    def __post_init__(self) -> None:
        object.__setattr__(self, "special_tokens", tuple(validate_special_tokens(self.special_tokens)))
        self._check_vocab_size()
        self._check_special_tokens()
        self._check_sizes()
        check_choice("count", self.count_backend, COUNT_BACKENDS)
        _check_merge_backend(self.merge_backend)

    def _check_vocab_size(self) -> None:
        least = 256 + len(self.special_tokens)
        if not isinstance(self.vocab_size, int) or self.vocab_size < least:
            raise ConfigError(
                f"vocab_size must be at least 256 + {len(self.special_tokens)} special token(s) = {least}, got {self.vocab_size}"
            )

    def _check_special_tokens(self) -> None:
        for tok in self.special_tokens:
            if len(tok.encode("utf-8")) == 1:
                raise ConfigError(f"special token {tok!r} is a single byte, which is already a token of its own; use a longer marker")

    def _check_sizes(self) -> None:
        if self.chunk_bytes < 1 or self.scan_bytes < 1:
            raise ConfigError(f"chunk_bytes and scan_bytes must be positive, got {self.chunk_bytes} and {self.scan_bytes}")
        if self.max_memory is not None and self.max_memory < 4096:
            raise ConfigError(f"max_memory must be at least 4 KB, got {self.max_memory} bytes")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be at least 1 (or None / 0 for all cores), got {self.workers}")

    @property
    def num_merges(self) -> int:
        """Merges to learn: vocab_size less the special tokens and the 256 bytes."""
        return self.vocab_size - 256 - len(self.special_tokens)

    def train(self, input_path: str | os.PathLike) -> TrainedTokenizer:
        """Train on a UTF-8 text file: the Tokenizer (these special tokens, backend "auto") and its TrainStats.

        InputFileError / InvalidUTF8Error for an unreadable, empty or non-UTF-8 file.
        """
        stats = TrainStats()
        vocab, merges = self.learn(input_path, stats)
        return TrainedTokenizer(Tokenizer(vocab, merges, list(self.special_tokens)), stats)

    def learn(
        self, input_path: str | os.PathLike, stats: TrainStats | None = None
    ) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
        """(vocab id -> token bytes, merges in creation order), as train_bpe returns them; fills `stats` when given."""
        stats = stats if stats is not None else TrainStats()
        words = self._count(input_path, stats)
        id_merges = self._merge(words, stats)
        return vocab_and_merges(id_merges, self.special_tokens)

    def _count(self, input_path: str | os.PathLike, stats: TrainStats) -> PackedWords:
        """Stage 1: the distinct pre-tokens of the input and their counts, packed for the merge loop.

        One plain text file takes count_pretokens (byte ranges of the file); any other corpus
        (shards, compressed, a folder or glob) count_corpus_pretokens, with the same counts as its
        conversion to one text file.
        """
        from tinylm.corpus import is_single_plain_text

        t0 = time.perf_counter()
        args = (list(self.special_tokens),)
        if is_single_plain_text(input_path):
            path = check_input_file(input_path)
            stats.input_bytes = path.stat().st_size
            counts = count_pretokens(path, *args, self.workers, self.chunk_bytes, self.progress, self.max_memory,
                                     self.spill_dir, self.count_backend, scan_bytes=self.scan_bytes)
        else:
            counts, stats.extra["read"], stats.input_bytes = count_corpus_pretokens(
                input_path, *args, self.read_options, self.workers, self.chunk_bytes, self.progress, self.max_memory,
                self.spill_dir, self.count_backend, self.scan_bytes)
        stats.count_backend = C if self.count_backend != PYTHON and pretoken_counter() is not None else PYTHON
        words = PackedWords(counts.items_bytes())  # distinct words, streamed from memory (freed as read) or disk runs
        stats.spill_runs = len(counts.runs)
        stats.distinct_pretokens = len(words)
        stats.count_seconds = time.perf_counter() - t0
        return words

    def _merge(self, words: PackedWords, stats: TrainStats) -> list[tuple[int, int]]:
        """Stage 2: the merges, as pairs of internal ids (bytes 0..255, merge k makes 256+k)."""
        t0 = time.perf_counter()
        id_merges, stats.merge_backend = run_merges(words, self.num_merges, self.merge_backend, self.progress)
        stats.merge_seconds = time.perf_counter() - t0
        stats.num_merges = len(id_merges)
        return id_merges


def vocab_and_merges(
    id_merges: list[tuple[int, int]], special_tokens: tuple[str, ...] | list[str]
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Merges of internal ids (bytes 0..255, merge k makes 256+k) as the vocabulary and byte merges.

    Ids of the vocabulary: special tokens first (their UTF-8 bytes), then the 256 bytes, then
    the merged tokens in creation order.
    """
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


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str] | None = None,
    *,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
    stats: TrainStats | None = None,
    max_memory: int | None = None,
    spill_dir: str | os.PathLike | None = None,
    merge_backend: str = AUTO,
    count_backend: str = AUTO,
    scan_bytes: int = DEFAULT_SCAN_BYTES,
    read_options=None,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a text file or a corpus of shards: the course-compatible function.

    input_path: a text file (documents separated by special tokens), or any corpus tinylm.corpus
    reads (.jsonl / .parquet shards, compressed .gz/.bz2/.xz/.zst, a folder or glob), whose records
    are documents: the merges equal those of its conversion to one .txt file with the separator
    (read_options.separator, <|endoftext|>) between documents. read_options: a
    tinylm.corpus.ReadOptions (JSON field / Parquet column, skipping bad records); what reading
    found lands in stats.extra["read"] (a ReadStats).

    Returns (vocab id -> token bytes, merges in creation order). Ids: special tokens first, then
    the 256 bytes, then merged tokens; `vocab_size` counts all three. The keywords are
    BpeTrainer's settings (num_workers is its `workers`); `stats`, when given, is filled with
    what training measured. `BpeTrainer(...).train(path)` returns a ready Tokenizer instead.
    """
    trainer = BpeTrainer(
        vocab_size, tuple(special_tokens or ()), workers=num_workers, chunk_bytes=chunk_bytes, scan_bytes=scan_bytes,
        max_memory=max_memory, spill_dir=spill_dir, merge_backend=merge_backend, count_backend=count_backend, progress=progress,
        read_options=read_options,
    )
    return trainer.learn(input_path, stats)
