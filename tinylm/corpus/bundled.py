"""The corpus bundled with tinylm, so the quick start needs no download (tinylm/corpus/, see its NOTICE)."""

from __future__ import annotations

import lzma
import os
import shutil
from pathlib import Path

from tinylm.io import atomic_write, atomic_write_bytes

BUNDLED_CORPUS = Path(__file__).parent / "pd_prose.txt.xz"
DOC_SEPARATOR = "<|endoftext|>"


def extract_bundled_corpus(dest: str | os.PathLike) -> Path:
    """Decompress the bundled corpus to dest (reused when already there)."""
    dest = Path(dest)
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    with lzma.open(BUNDLED_CORPUS, "rb") as src, atomic_write(dest) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def split_documents(text: str) -> list[str]:
    """The documents of a text whose documents are separated by <|endoftext|> (empty ones dropped)."""
    return [d.strip("\n") for d in text.split(DOC_SEPARATOR) if d.strip()]


def hold_out_every(docs: list[str], every: int) -> tuple[list[str], list[str]]:
    """(train, validation): every `every`-th document is held out for validation (deterministic)."""
    val = [d for i, d in enumerate(docs) if i % every == every - 1]
    train = [d for i, d in enumerate(docs) if i % every != every - 1]
    return train, val


def write_documents(path: str | os.PathLike, docs: list[str]) -> None:
    """Write documents separated by <|endoftext|> lines: the format split_documents reads."""
    atomic_write_bytes(path, (f"\n{DOC_SEPARATOR}\n".join(docs) + "\n").encode("utf-8"))
