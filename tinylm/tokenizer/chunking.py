"""Reading big text files in pieces: chunk boundaries at safe places, and the one parallel map over them.

Both BPE training and dataset encoding hand byte ranges (not text) to worker processes, so no
process ever holds the whole file, and a range never cuts a document, a pre-token or a special
token in two.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from itertools import islice

from tinylm.errors import ConfigError, InvalidUTF8Error
from tinylm.tokenizer.pretokenize import find_safe_cut, safe_pieces, special_matcher

DEFAULT_CHUNK_BYTES = 4 << 20
DEFAULT_SCAN_BYTES = 1 << 20
_SCAN_WINDOW = DEFAULT_SCAN_BYTES  # the old name, still read by tests/reliability


def chunk_ranges(
    path: str | os.PathLike,
    special_tokens: list[str],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    scan_bytes: int = DEFAULT_SCAN_BYTES,
) -> Iterator[tuple[int, int]]:
    """Byte ranges (start, end) covering the file in order, cut only at safe places.

    Each range but the last is at least chunk_bytes long: it ends at the first safe cut (see
    pretokenize.find_safe_cut) at or after start + chunk_bytes, so encoding or counting the ranges
    apart gives exactly what the whole file gives, for any set of special tokens. The cut is
    looked for in windows of scan_bytes, each read with the longest special token's length of
    context on both sides; a file with no safe cut after a point ends in one range. Only those
    windows are read, so this is cheap on any file size. ConfigError for a size below 1.
    """
    if chunk_bytes < 1 or scan_bytes < 1:
        raise ConfigError(f"chunk_bytes and scan_bytes must be positive, got {chunk_bytes} and {scan_bytes}")
    matcher = special_matcher(special_tokens)
    context = max(matcher.max_bytes, 2)  # bytes either side that decide whether a cut is safe
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            cut = _first_cut_after(f, size, pos + chunk_bytes, matcher, scan_bytes, context)
            if cut == -1:
                yield pos, size
                return
            yield pos, cut
            pos = cut


def _first_cut_after(f, size: int, probe: int, matcher, scan_bytes: int, context: int) -> int:
    """The first safe cut at or after byte probe of the open file f (size bytes), or -1."""
    window = probe
    while window < size:
        read_start = max(0, window - context)
        f.seek(read_start)
        buf = f.read(window - read_start + scan_bytes + context)
        found = find_safe_cut(buf, matcher, window - read_start, window - read_start + scan_bytes - 1)
        if found != -1:
            return read_start + found
        window += scan_bytes
    return -1


def read_range(path: str | os.PathLike, start: int, end: int) -> bytes:
    """The bytes [start, end) of the file at path."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def decode_range(data: bytes, path: str | os.PathLike, start: int) -> str:
    """data (the file's bytes from offset start) as text; InvalidUTF8Error naming the file offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUTF8Error(path, start + exc.start, exc.reason) from None


def read_text_range(path: str | os.PathLike, start: int, end: int) -> str:
    """The bytes [start, end) of the file as text; InvalidUTF8Error where they are not UTF-8."""
    return decode_range(read_range(path, start, end), path, start)


def pool_context():
    """fork where it is safe: workers start in milliseconds and share the parent's imports.

    Forking a process that runs other threads can hand a child a lock some thread was holding
    (a deadlock that shows up as a hung pool), so with other threads alive the workers come
    from a clean forkserver instead. The one thread let through is the monitor of a caller's own
    tqdm bars (tinylm's bars start none, see tinylm.progress): it only sleeps and retunes bars,
    and the workers never touch tqdm.
    """
    methods = mp.get_all_start_methods()
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t.name != "tqdm_monitor"]
    if "fork" in methods and threading.current_thread() is threading.main_thread() and not others:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


@contextmanager
def map_pieces(
    func: Callable,
    pieces: Iterable,
    workers: int,
    *,
    ordered: bool = True,
    initializer: Callable | None = None,
    initargs: tuple = (),
    threads: bool = False,
) -> Iterator[Iterator]:
    """Yield the results of func over pieces (file ranges and their settings), computed in parallel.

    The one parallel map of BPE counting and dataset encoding. With workers <= 1 everything runs in
    this process (initializer first), lazily. Else in a pool from pool_context() (worker processes),
    or with `threads` in `workers` threads of this process (for a func whose heavy part releases the
    GIL, as the C encoder does: no process start-up, no pickling of results; the initializer runs
    once here). Results come in the order of `pieces` (ordered) or as they finish, `pieces` consumed
    lazily (threads: at most 2 × workers in flight, so memory stays bounded by the piece size).
    The workers are stopped when the block is left, whether the results were all read or not.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield map(func, pieces)
        return
    if threads:
        if initializer is not None:
            initializer(*initargs)
        executor = ThreadPoolExecutor(workers, thread_name_prefix="tinylm-piece")
        try:
            yield _thread_map(executor, func, pieces, 2 * workers, ordered)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        return
    pool = pool_context().Pool(workers, initializer=initializer, initargs=initargs)
    try:
        yield pool.imap(func, pieces) if ordered else pool.imap_unordered(func, pieces)
    finally:
        pool.terminate()
        pool.join()


def _thread_map(executor: ThreadPoolExecutor, func: Callable, pieces: Iterable, window: int, ordered: bool) -> Iterator:
    """func over pieces in the executor's threads, at most `window` submitted and not yet yielded."""
    source = iter(pieces)
    pending = [executor.submit(func, p) for p in islice(source, window)]
    while pending:
        if ordered:
            done = pending.pop(0)
        else:
            done = next(as_completed(pending))
            pending.remove(done)
        yield done.result()
        # the next piece is submitted once the caller has taken this result: at most `window` pieces
        # are ever started and not yet taken (memory bounded by the pieces, however slow the caller)
        for p in islice(source, 1):
            pending.append(executor.submit(func, p))


# --- corpora of shards (tinylm.corpus): units of parts, and safe pieces of streamed text -------------
def text_pieces(blocks: Iterable[str], special_tokens: Iterable[str], piece_chars: int = DEFAULT_CHUNK_BYTES) -> Iterator[str]:
    """The text given in blocks, re-cut into pieces of at least piece_chars characters (but the last)
    that end at safe cuts (pretokenize.find_safe_cut), so counting or encoding the pieces apart gives
    what the whole text gives, for any set of special tokens. Memory: about one piece plus one block
    (text with no safe cut for a long stretch is held whole). The str counterpart of chunk_ranges.
    """
    if piece_chars < 1:
        raise ConfigError(f"piece_chars must be positive, got {piece_chars}")
    yield from safe_pieces(blocks, piece_chars, special_matcher(special_tokens))


def separator_stands_alone(separator: str, special_tokens: Iterable[str]) -> bool:
    """True when every occurrence of separator in any text is taken as that one special token, with no
    special token occurrence across its start: the text before it and from it on then count and encode
    apart exactly as together, so the parts of a corpus can go to workers independently.

    Needs: separator is a special token; no other special token starts with it; no special token has a
    proper suffix that starts with the separator or is a prefix of it (such a token could reach across
    the separator's start, as <|endoftext|><|endoftext|> does).
    """
    tokens = set(special_tokens)
    if separator not in tokens:
        return False
    for t in tokens:
        if t != separator and t.startswith(separator):
            return False
        if any(t[k:].startswith(separator) or separator.startswith(t[k:]) for k in range(1, len(t))):
            return False
    return True


def corpus_units(spec, options, special_tokens: list[str], chunk_bytes: int = DEFAULT_CHUNK_BYTES, *,
                 scan_bytes: int = DEFAULT_SCAN_BYTES) -> list[list]:
    """The corpus (a file, folder or glob of shards; tinylm.corpus) as units of work, in order.

    Each unit is a list of tinylm.corpus.Part read one after another by one worker. When the
    document separator stands alone among the special tokens (separator_stands_alone), every part
    is its own unit (parallel over shards and over pieces of a shard); otherwise the whole corpus
    is one unit, read as one stream, so the result stays exact.
    """
    from tinylm.corpus import plan_parts, resolve_shards

    if chunk_bytes < 1 or scan_bytes < 1:
        raise ConfigError(f"chunk_bytes and scan_bytes must be positive, got {chunk_bytes} and {scan_bytes}")
    shards = resolve_shards(spec)
    parts = plan_parts(shards, options, chunk_bytes, lambda p: chunk_ranges(p, special_tokens, chunk_bytes, scan_bytes=scan_bytes))
    if separator_stands_alone(options.separator, special_tokens):
        return [[p] for p in parts]
    return [parts]


def unit_text(unit: list, options, stats, *, first: bool) -> Iterator[str]:
    """The unit's slice of the corpus text in blocks. first: the unit opens the corpus, so no
    separator goes before its first document (nor before any until a document has been read)."""
    from tinylm.corpus import part_text

    for part in unit:
        lead = "" if first and stats.documents == 0 else None
        yield from part_text(part, options, stats, lead)


def unit_disk_bytes(unit: list) -> int:
    """Input bytes on disk the unit reads (compressed size for compressed shards): the progress bars' unit."""
    return sum(p.disk_bytes for p in unit)
