"""The corpus bundled with tinylm, so the quick start needs no download (see NOTICE)."""

from __future__ import annotations

import lzma
import os
from pathlib import Path

BUNDLED_CORPUS = Path(__file__).parent / "pd_prose.txt.xz"
DOC_SEPARATOR = "<|endoftext|>"


def extract_bundled_corpus(dest: str | os.PathLike) -> Path:
    """Decompress the bundled corpus to dest (reused when already there)."""
    dest = Path(dest)
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with lzma.open(BUNDLED_CORPUS, "rb") as src, open(tmp, "wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
    os.replace(tmp, dest)
    return dest


def split_documents(path: str | os.PathLike, train_path: str | os.PathLike, val_path: str | os.PathLike, val_every: int = 20) -> tuple[int, int]:
    """Write every val_every-th document to val_path and the rest to train_path (deterministic)."""
    text = Path(path).read_text(encoding="utf-8")
    docs = [d.strip("\n") for d in text.split(DOC_SEPARATOR) if d.strip()]
    val = [d for i, d in enumerate(docs) if i % val_every == val_every - 1]
    train = [d for i, d in enumerate(docs) if i % val_every != val_every - 1]
    sep = f"\n{DOC_SEPARATOR}\n"
    Path(train_path).write_text(sep.join(train) + "\n", encoding="utf-8")
    Path(val_path).write_text(sep.join(val) + "\n", encoding="utf-8")
    return len(train), len(val)
