"""The one way tinylm writes a file atomically, checks an input file and cleans temporary files.

Every write goes to a temporary beside its target, named `.tmp-<target name>.<random>`
(TEMP_PREFIX, then the target's name, then mkstemp's random suffix), is flushed and fsynced,
renamed over the target and the folder fsynced: at every instant the target holds either its
previous complete contents or the new complete ones. A `kill -9` mid-write can leave only such a
temporary, which remove_stale_temps_of (one target) or remove_stale_temps_in (a whole folder
tinylm owns, such as a run folder) delete. Failures are one OutputError naming the target.

This module sits at the bottom of the house: it imports nothing of tinylm but its errors.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tinylm.errors import InputFileError, OutputError

TEMP_PREFIX = ".tmp-"
_RANDOM_SUFFIX = r"[A-Za-z0-9_]+"  # what tempfile.mkstemp puts after the prefix (no dot)


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """The path, if it names a readable, non-empty file; else one clear InputFileError.

    `what` names the file in the message ("input", "vocab", ...).
    """
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


def ensure_output_dir(path: str | os.PathLike) -> Path:
    """Create an output folder and prove it is writable before any long work starts (OutputError if not)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".tinylm-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {p}: {exc.strerror or exc}") from None
    return p


def is_temp_of(candidate: str | os.PathLike, target: str | os.PathLike) -> bool:
    """Whether `candidate` is a temporary that an atomic write of `target` made (same folder)."""
    candidate, target = Path(candidate), Path(target)
    pattern = re.escape(TEMP_PREFIX + target.name) + r"\." + _RANDOM_SUFFIX
    return candidate.parent == target.parent and re.fullmatch(pattern, candidate.name) is not None


def new_temp(path: str | os.PathLike) -> tuple[int, Path]:
    """A new, empty temporary for a write of `path`: (open file descriptor, its path beside `path`).

    Named `.tmp-<path's name>.<random>` (hidden, unique, recognised by is_temp_of); OSError when
    the folder cannot be written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
    return fd, Path(tmp)


def remove_stale_temps_of(path: str | os.PathLike) -> None:
    """Delete the temporaries that killed earlier writes of this one target left beside it.

    Only `.tmp-<name>.<random>` for exactly this name: the temporaries of `vocab.json.bak` or of
    other files in the folder are left alone.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    for stale in path.parent.glob(f"{TEMP_PREFIX}*"):
        if is_temp_of(stale, path):
            _unlink_quietly(stale)


def remove_stale_temps_in(folder: str | os.PathLike) -> None:
    """Delete every temporary (`.tmp-*`) in a folder tinylm owns (a run folder): never a complete file."""
    for stale in Path(folder).glob(f"{TEMP_PREFIX}*"):
        _unlink_quietly(stale)


@contextmanager
def atomic_write(path: str | os.PathLike, what: str = "") -> Iterator[BinaryIO]:
    """A binary file to stream into; on a clean exit it becomes `path`, all at once.

    The file is a temporary in path's folder (created with the folder, if missing). On leaving the
    block it is flushed, fsynced, renamed over `path` and the folder fsynced. If the block raises,
    the temporary is deleted and `path` keeps its previous contents; an OSError (also one that
    torch.save wraps in a RuntimeError) becomes OutputError("cannot write <what> <path>: reason"),
    any other exception passes through. `what` ("checkpoint") names the kind of file in messages.
    """
    path = Path(path)
    kind = f"{what} " if what else ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps_of(path)
        fd, tmp = new_temp(path)
    except OSError as exc:
        where = f"{what} in {path.parent}" if what else str(path)
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        _unlink_quietly(tmp)
        cause = _os_error_of(exc)
        if cause is None:
            raise
        kept = f"; the previous {what} there is unchanged" if what and path.exists() else ""
        raise OutputError(f"cannot write {kind}{path}: {cause.strerror or cause}{kept}") from None
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "") -> None:
    """Write `data` to `path` atomically (see atomic_write)."""
    with atomic_write(path, what) as f:
        f.write(data)


def atomic_write_files(files: Mapping[str | os.PathLike, bytes]) -> None:
    """Write several files so that none is visible until all are fully on disk.

    Every file is written and fsynced under its temporary name first; only then are they renamed
    into place, in the mapping's order, so a kill or a full disk while writing leaves the previous
    files (or none). Only the renames themselves, microseconds apart, are not one atomic step.
    OutputError names the file that could not be written.
    """
    pending: list[tuple[Path, Path]] = []
    path = None
    try:
        for path, data in files.items():
            path = Path(path)
            remove_stale_temps_of(path)
            fd, tmp = new_temp(path)
            pending.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in pending:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in pending:
            _unlink_quietly(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    for folder in {p.parent for _, p in pending}:
        fsync_dir(folder)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write: exc itself, or the one torch.save's zip writer wraps."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, RuntimeError) and isinstance(exc.__context__, OSError):
        return exc.__context__
    return None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
