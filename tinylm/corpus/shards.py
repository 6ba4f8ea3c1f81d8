"""Which files a corpus argument names, and the format of each: the shard list every reader starts from.

A corpus is one file, a folder (its shards, recursively, in sorted path order) or a glob pattern
(`data/*.jsonl.zst`, `**` allowed). A shard's format comes from its name: `.txt` (documents
separated by the special token), `.jsonl` or `.json` (JSON Lines, one document per record),
`.parquet` (a string column), the first two optionally compressed as `.gz`, `.bz2`, `.xz` or `.zst`
(Parquet is compressed inside the file).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from tinylm.errors import CorpusError, InputFileError
from tinylm.io import check_input_file

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gz", ".bz2": "bz2", ".xz": "xz", ".zst": "zst"}
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Shard:
    """One file of a corpus: its path, format ("txt", "jsonl", "parquet") and compression (None or "gz", "bz2", "xz", "zst")."""

    path: Path
    format: str
    compression: str | None

    @property
    def is_plain_text(self) -> bool:
        """An uncompressed .txt file: read by byte ranges (seekable, memory-mappable)."""
        return self.format == "txt" and self.compression is None


def shard_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """(format, compression) from a file name; CorpusError naming the file for an unknown extension."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression is not None:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and compression is not None):
        known = ", ".join(FORMATS) + " (" + ", ".join(COMPRESSIONS) + " compressed, but not .parquet)"
        raise CorpusError(f"{path}: unknown corpus file extension {''.join(Path(path).suffixes) or '(none)'!r}; expected one of {known}")
    return fmt, compression


def resolve_shards(spec: str | os.PathLike) -> list[Shard]:
    """The shards a corpus argument names, in order; one clear error for a missing, empty or unknown input.

    spec: a file, a folder (every file under it, hidden files skipped) or a glob pattern. Raises
    InputFileError (nothing matches, an empty file or folder), CorpusError (an unknown extension).
    """
    text = os.fspath(spec)
    p = Path(text)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise InputFileError(f"input directory holds no corpus files: {p}")
    elif p.exists():
        files = [p]
    elif any(c in text for c in _GLOB_CHARS):
        files = sorted(Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file())
        if not files:
            raise InputFileError(f"no corpus file matches {text}")
    else:
        raise InputFileError(f"input file not found: {p}")
    shards = [Shard(f, *(_lenient_format(f) if f == p else shard_format(f))) for f in files]
    for s in shards:
        check_input_file(s.path, "input")
    return shards


def _lenient_format(path: Path) -> tuple[str, str | None]:
    """A file named on its own: plain text unless its name says compressed, JSON Lines or Parquet.

    So `corpus.en` or `dump.text` keep working as text; in a folder or glob every extension must be known.
    """
    suffix = path.suffix.lower()
    if suffix in COMPRESSIONS or FORMATS.get(suffix, "txt") != "txt":
        return shard_format(path)
    return "txt", None


def is_single_plain_text(spec: str | os.PathLike) -> bool:
    """True when the corpus is one uncompressed text file (or a missing path, whose error the text path gives).

    That is tinylm's original byte-range path, kept as it was: seekable, read in pieces by workers.
    """
    p = Path(spec)
    if p.is_dir():
        return False
    if not p.exists():
        return not any(c in os.fspath(spec) for c in _GLOB_CHARS)
    return _lenient_format(p) == ("txt", None)
