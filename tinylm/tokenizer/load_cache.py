"""A cache of loaded tokenizers, keyed by the content of the files they were loaded from.

Reading GPT-2's vocab.json and merges.txt and building a Tokenizer takes about 0.13 s (JSON,
GPT-2's byte-to-unicode spellings, 50,000 merges, the vocabulary's dicts); unpickling the
finished Tokenizer takes about 0.03 s. `tinylm encode` on 20 MB spends less than that on the
encoding itself, so the start-up decides its time. As tiktoken keeps the rank files it downloads,
tinylm keeps each Tokenizer it loads from files, pickled (`Tokenizer.__getstate__`: the C
encoder is rebuilt on loading), in

    $TINYLM_CACHE_DIR                     when set ("off", "0" or "" turns the cache off), else
    $XDG_CACHE_HOME/tinylm/tokenizers     or ~/.cache/tinylm/tokenizers

one file per key: SHA-256 of the files' bytes, the special tokens asked for, the class and how
the files were read, tinylm's version, the cache format and the source of the modules whose
objects the state holds (so a changed Tokenizer never reads an old entry). Changed files are a
new key; a file that changes while it is being loaded is not cached (the key is taken again
after parsing). Entries not read for PRUNE_DAYS days are deleted when a new one is written. An
entry that cannot be read or unpickled, or holds another key, is ignored and rewritten; a cache
folder that cannot be found or written is skipped: loading never fails because of the cache. The cache holds pickles: like any pickle, an entry is only as
trustworthy as the folder it is in (yours, by default).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

CACHE_ENV = "TINYLM_CACHE_DIR"
FORMAT = 1
PRUNE_DAYS = 30  # entries not read for this long are deleted when another is written
_STATE_MODULES = ("bpe.py", "files.py", "hf_json.py", "pretokenize.py", "load_cache.py")  # in this folder
_OFF = {"", "0", "off", "none", "false"}

T = TypeVar("T")


def cache_dir() -> Path | None:
    """The folder tokenizers are cached in, or None when $TINYLM_CACHE_DIR turns the cache off (or
    no home folder can be found, as for a uid without a passwd entry and no $HOME)."""
    value = os.environ.get(CACHE_ENV)
    try:
        if value is not None:
            return None if value.strip().lower() in _OFF else Path(value).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except (RuntimeError, KeyError, OSError):
        return None
    return Path(base) / "tinylm" / "tokenizers"


@functools.cache
def _code_digest() -> bytes | None:
    """SHA-256 of the source of _STATE_MODULES (it cannot change within a process: taken once), or
    None when one cannot be read (the cache is then off)."""
    h = hashlib.sha256()
    for name in _STATE_MODULES:
        try:
            data = (Path(__file__).parent / name).read_bytes()
        except OSError:
            return None
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def cache_key(paths: Sequence[str | os.PathLike], how: str) -> str | None:
    """SHA-256 (hex) of the files' bytes (each with its length), `how` (the loader and its
    arguments), tinylm's version, FORMAT and the source of _STATE_MODULES; None when a file
    cannot be read (the loader then raises its own error)."""
    from tinylm import __version__

    code = _code_digest()
    if code is None:
        return None
    h = hashlib.sha256(f"tinylm-tokenizer-cache {FORMAT} {__version__}\0{how}\0".encode() + code)
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError:
            return None
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cached_load(cls: type[T], paths: Sequence[str | os.PathLike], how: str, backend: str, build: Callable[[], T]) -> T:
    """cls loaded from paths: from the cache when it holds these files' Tokenizer, else build()
    (which reads the files and may raise), then stored, unless the files changed while build()
    read them. `backend` is applied to a cached entry (the pickled state holds no encoder)."""
    folder = cache_dir()
    how = f"{cls.__module__}.{cls.__qualname__} {how}"
    key = cache_key(paths, how) if folder is not None else None
    if key is None:
        return build()
    entry = folder / f"{key}.pickle"
    state = _read(entry, key)
    if state is not None:
        tok = cls.__new__(cls)
        state["_backend_request"] = backend
        tok.__setstate__(state)
        return tok
    tok = build()
    if cache_key(paths, how) == key:  # the bytes parsed are the bytes hashed
        _write(entry, key, tok)
    return tok


def _read(entry: Path, key: str) -> dict | None:
    try:
        payload = pickle.loads(entry.read_bytes())
    except Exception:  # noqa: BLE001 - none yet, or a damaged or foreign entry: ignored, then (re)written
        return None
    if not (isinstance(payload, dict) and payload.get("key") == key and isinstance(payload.get("state"), dict)):
        return None
    try:
        os.utime(entry)  # read recently: kept by _prune
    except OSError:
        pass
    return payload["state"]


def _write(entry: Path, key: str, tok) -> None:
    from tinylm.errors import OutputError
    from tinylm.io import atomic_write_bytes

    try:
        atomic_write_bytes(entry, pickle.dumps({"key": key, "state": tok.__getstate__()}, protocol=pickle.HIGHEST_PROTOCOL))
    except (OutputError, OSError, pickle.PicklingError, TypeError, AttributeError):
        return  # a read-only or full disk, an unpicklable subclass: the cache is an optimisation only
    _prune(entry.parent, keep=entry)


def _prune(folder: Path, keep: Path) -> None:
    """Deletes the entries of folder not read or written for PRUNE_DAYS days."""
    import time

    cutoff = time.time() - PRUNE_DAYS * 86400
    try:
        for old in folder.glob("*.pickle"):
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
    except OSError:
        pass
