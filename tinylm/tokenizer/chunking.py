"""Reading big text files in pieces: input checks and chunk boundaries at safe places.

Both BPE training and dataset encoding hand byte ranges (not text) to worker processes, so no
process ever holds the whole file, and a range never cuts a document, a pre-token or a special
token in two.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import os
from collections.abc import Iterator
from pathlib import Path

from tinylm.errors import InputFileError, InvalidUTF8Error
from tinylm.tokenizer.pretokenize import find_safe_cut

DEFAULT_CHUNK_BYTES = 4 << 20
_SCAN_WINDOW = 1 << 20


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """The path, if it names a readable, non-empty file; else one clear InputFileError."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"{what} path is a directory, not a file: {p}")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise InputFileError(f"cannot read {what} file {p}: {exc.strerror}") from None
    if size == 0:
        raise InputFileError(f"{what} file is empty: {p}")
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
