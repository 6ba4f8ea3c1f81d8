"""Encode a corpus of shards (tinylm.corpus: JSON Lines, Parquet, compressed, folders, globs) into one
token file, as if it had first been converted to one .txt file with the separator between documents.

The units of the corpus (chunking.corpus_units) are encoded in worker processes, each streaming its
text in safe pieces (chunking.text_pieces) into a token file of its own in a temporary folder beside
the output; the parent appends those in corpus order to the output's temporary name and renames it
when complete. So memory stays at about one piece per worker whatever a shard's size, and an error
or interruption leaves no output and no temporary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tinylm.errors import OutputError
from tinylm.tokenizer.bpe import Tokenizer
from tinylm.tokenizer.chunking import DEFAULT_CHUNK_BYTES, DEFAULT_SCAN_BYTES, corpus_units, map_pieces, text_pieces, unit_disk_bytes, unit_text
from tinylm.tokenizer.token_arrays import _NPY_HEADER_BYTES, _WORKER_TOKENIZER, EncodedFileInfo, _init_worker, _npy_header, output_file, sidecar_path, token_dtype
from tinylm.io import atomic_write, atomic_write_bytes


def _encode_unit(args) -> tuple[int, int, int, bool, object, str]:
    """Encode one unit into part_path: (disk bytes, text bytes, tokens, whether it opens with its lead separator, ReadStats, part_path)."""
    from tinylm.corpus import ReadStats

    unit, first, options, part_path, chunk_bytes = args
    tok: Tokenizer = _WORKER_TOKENIZER["tok"]
    dtype = np.dtype(_WORKER_TOKENIZER["dtype"])
    read, text_bytes, num_tokens = ReadStats(), 0, 0
    with open(part_path, "wb") as f:
        for piece in text_pieces(unit_text(unit, options, read, first=first), tok.special_tokens, chunk_bytes):
            ids = tok.encode_to_numpy(piece, dtype)
            f.write(ids.tobytes())
            text_bytes += len(piece.encode("utf-8", "surrogatepass"))
            num_tokens += len(ids)
    led = not first and bool(unit[0].lead) and read.documents > 0
    return unit_disk_bytes(unit), text_bytes, num_tokens, led, read, part_path


def encode_corpus(
    tokenizer: Tokenizer,
    spec: str | os.PathLike,
    output_path: str | os.PathLike,
    read_options=None,
    *,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    scan_bytes: int = DEFAULT_SCAN_BYTES,
    progress: bool = False,
    read_stats=None,
) -> EncodedFileInfo:
    """Encode the corpus `spec` (a file, folder or glob of shards) to output_path (.npy or raw ids).

    The ids equal tokenizer.encode of the corpus's text: its documents in order, joined by
    read_options.separator (<|endoftext|>), a .txt shard's text as it is. read_options: a
    tinylm.corpus.ReadOptions; read_stats: a ReadStats that receives the documents read and the
    records skipped. Errors: InputFileError, CorpusError, InvalidUTF8Error, OutputError, nothing
    written under output_path (nor its sidecar) when one is raised.
    """
    from tinylm.corpus import ReadOptions, ReadStats
    from tinylm.progress import progress_bar

    options = read_options or ReadOptions()
    units = corpus_units(spec, options, tokenizer.special_tokens, chunk_bytes, scan_bytes=scan_bytes)
    out = output_file(output_path)
    dtype = token_dtype(tokenizer.vocab_size)
    for stale in out.parent.glob(f".{out.name}.parts-*"):  # a killed run's per-unit files
        shutil.rmtree(stale, ignore_errors=True)
    tokenizer.encode("")  # compiles the special-token matcher before worker processes fork
    read = read_stats if read_stats is not None else ReadStats()
    try:
        parts_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.parts-", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    tasks = [(unit, i == 0, options, str(parts_dir / f"{i:06d}.bin"), chunk_bytes) for i, unit in enumerate(units)]
    separator_bytes = len(options.separator.encode("utf-8"))
    try:
        with atomic_write(out) as f, \
                map_pieces(_encode_unit, tasks, min(num_workers or os.cpu_count() or 1, len(tasks)), initializer=_init_worker, initargs=(tokenizer, dtype.str)) as results, \
                progress_bar(total=sum(map(unit_disk_bytes, units)), unit="B", unit_scale=True, desc="encoding", disable=not progress, leave=False) as bar:
            if out.suffix == ".npy":
                f.write(b"\0" * _NPY_HEADER_BYTES)
            num_bytes = num_tokens = 0
            for disk_bytes, text_bytes, tokens, led, unit_read, part_path in results:
                drop = led and read.documents == 0  # every document before it was skipped: no separator opens the corpus
                _append(f, part_path, dtype.itemsize if drop else 0)
                num_bytes += text_bytes - (separator_bytes if drop else 0)
                num_tokens += tokens - drop
                read.merge(unit_read)
                bar.update(disk_bytes)
            if out.suffix == ".npy":
                f.seek(0)
                f.write(_npy_header(dtype, num_tokens))
        info = EncodedFileInfo(str(spec), num_bytes, num_tokens, dtype.name, tokenizer.vocab_size, "npy" if out.suffix == ".npy" else "bin")
    finally:
        _WORKER_TOKENIZER.clear()
        shutil.rmtree(parts_dir, ignore_errors=True)
    atomic_write_bytes(sidecar_path(out), json.dumps(asdict(info), indent=1).encode())
    return info


def _append(f, part_path: str, skip: int) -> None:
    """Copy a unit's token file into the output (less its first `skip` bytes), then delete it."""
    with open(part_path, "rb") as part:
        part.seek(skip)
        shutil.copyfileobj(part, f, 1 << 20)
    os.unlink(part_path)
