"""Writing corpora in every format, and the reference they must equal: the corpus converted to one .txt.

The writers use the libraries directly (json, gzip, bz2, lzma, zstandard, pyarrow), not tinylm's
readers; `as_txt` is the conversion by definition: every shard's documents in order joined by
<|endoftext|>, a .txt shard's text taken as it is.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

EOT = "<|endoftext|>"
COMPRESSIONS = ["", ".gz", ".bz2", ".xz", ".zst"]
# (format suffix, compression suffix) of every kind of shard tinylm reads
KINDS = [(f, c) for f in (".txt", ".jsonl") for c in COMPRESSIONS] + [(".json", ".gz"), (".parquet", "")]


def compress(data: bytes, compression: str) -> bytes:
    if compression == ".gz":
        return gzip.compress(data)
    if compression == ".bz2":
        return bz2.compress(data)
    if compression == ".xz":
        return lzma.compress(data)
    if compression == ".zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def jsonl_bytes(docs: list[str], field: str = "text") -> bytes:
    return "".join(json.dumps({"id": i, field: d}) + "\n" for i, d in enumerate(docs)).encode("utf-8")


def write_shard(path: Path, docs: list[str], row_group_size: int = 3) -> Path:
    """One shard holding docs in the format its name says; a .txt shard holds them joined by EOT."""
    name = path.name
    compression = next((c for c in COMPRESSIONS[1:] if name.endswith(c)), "")
    fmt = Path(name[: len(name) - len(compression)]).suffix
    if fmt == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"id": pa.array(range(len(docs)), pa.int64()), "text": pa.array(docs, pa.string())})
        pq.write_table(table, path, row_group_size=row_group_size)
        return path
    data = EOT.join(docs).encode("utf-8") if fmt == ".txt" else jsonl_bytes(docs)
    path.write_bytes(compress(data, compression))
    return path


def as_txt(shards_docs: list[list[str]]) -> str:
    """The conversion by definition: every document of every shard, in order, joined by EOT (a .txt
    shard written by write_shard is its documents joined by EOT, so it converts to the same)."""
    return EOT.join(d for docs in shards_docs for d in docs)
