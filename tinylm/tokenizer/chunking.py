"""Reading big text files in pieces: chunk boundaries at safe places, and the one parallel map over them.

Both BPE training and dataset encoding hand byte ranges (not text) to worker processes, so no
process ever holds the whole file, and a range never cuts a document, a pre-token or a special
token in two.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from tinylm.errors import ConfigError, InvalidUTF8Error
from tinylm.io import check_input_file  # noqa: F401 (re-exported: readers of file pieces check them here)
from tinylm.tokenizer.pretokenize import find_safe_cut, special_matcher

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


def read_text_range(path: str | os.PathLike, start: int, end: int) -> str:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUTF8Error(path, start + exc.start, exc.reason) from None


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
) -> Iterator[Iterator]:
    """Yield the results of func over pieces (file ranges and their settings), computed in worker processes.

    The one parallel map of BPE counting and dataset encoding. With workers <= 1 everything runs in
    this process (initializer first), lazily; else in a pool from pool_context(), results in the
    order of `pieces` (ordered) or as they finish, `pieces` consumed lazily. The pool is
    terminated when the block is left, whether the results were all read or not.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield map(func, pieces)
        return
    pool = pool_context().Pool(workers, initializer=initializer, initargs=initargs)
    try:
        yield pool.imap(func, pieces) if ordered else pool.imap_unordered(func, pieces)
    finally:
        pool.terminate()
        pool.join()
