"""Encode a whole text file into a token array (.npy or raw .bin) that training memory-maps.

Byte ranges of the file (cut at safe places, see chunking.py) are encoded in worker threads (the C
encoder releases the GIL; each thread its own Tokenizer.for_thread copy) or processes, and
written in file order, so the result is identical to a single-process encode. Output is streamed
through tinylm.io.atomic_write: a temporary renamed only when complete. A small JSON sidecar records what training
needs to report bits per byte: the text's byte count and the token count.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinylm.errors import ConfigError, DataError, OutputError
from tinylm.io import atomic_write, atomic_write_bytes, check_input_file
from tinylm.tokenizer.bpe import Tokenizer
from tinylm.tokenizer.chunking import DEFAULT_CHUNK_BYTES, DEFAULT_SCAN_BYTES, chunk_ranges, decode_range, map_pieces, read_range
from tinylm.tokenizer.token_dtypes import token_dtype  # noqa: F401 - re-exported: dataset.token_dtype

_NPY_HEADER_BYTES = 128  # fixed size, so the header can be written once the length is known


@dataclass
class EncodedFileInfo:
    """The sidecar `<output>.json`: what a token file holds and where it came from."""

    source: str
    num_bytes: int
    num_tokens: int
    dtype: str
    vocab_size: int
    format: str

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / max(1, self.num_tokens)


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }" % (dtype.str, length)
    body = d.ljust(_NPY_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


_WORKER_TOKENIZER: dict = {}


def _init_worker(tokenizer: Tokenizer, dtype: str) -> None:
    _WORKER_TOKENIZER["tok"] = tokenizer
    _WORKER_TOKENIZER["dtype"] = dtype


_THREAD_TOKENIZER = threading.local()  # encoding threads: each its own copy of the tokenizer (Tokenizer.for_thread)


def _encode_range(args) -> tuple[int, np.ndarray]:
    path, start, end = args
    tok: Tokenizer = _WORKER_TOKENIZER["tok"]
    if threading.current_thread() is not threading.main_thread():
        mine = getattr(_THREAD_TOKENIZER, "pair", None)
        if mine is None or mine[0] is not tok:
            mine = _THREAD_TOKENIZER.pair = (tok, tok.for_thread())
        tok = mine[1]
    data = read_range(path, start, end)
    try:
        ids = tok.encode_utf8_to_numpy(data, _WORKER_TOKENIZER["dtype"])
    except UnicodeDecodeError:
        decode_range(data, path, start)  # raises InvalidUTF8Error naming the file offset
        raise
    return end - start, ids


def use_threads(tokenizer: Tokenizer) -> bool:
    """Encode a file's pieces in threads (the C encoder releases the GIL) rather than processes.

    Threads when the C encoder is built: as fast as processes on 2 cores (53.2 vs 54.1 MB/s on 20 MB)
    with less memory, no process start-up and no pickling (docs/BENCHMARKS.md). The pure-Python
    encoder holds the GIL: processes.
    """
    return tokenizer.backend == "c"


def encode_file(
    tokenizer: Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    scan_bytes: int = DEFAULT_SCAN_BYTES,
    progress: bool = False,
    read_options=None,
    read_stats=None,
) -> EncodedFileInfo:
    """Encode input_path to output_path (`.npy`, or raw little-endian ids for any other suffix).

    input_path: a text file, or any corpus tinylm.corpus reads (JSON Lines / Parquet shards,
    compressed, a folder or glob; see tokenizer.corpus_arrays.encode_corpus, read_options a
    tinylm.corpus.ReadOptions), encoded as its conversion to one .txt file would be; what reading
    found is added to read_stats (a tinylm.corpus.ReadStats) when given.

    The file is encoded in byte ranges of at least chunk_bytes, cut only where encoding the pieces
    apart gives what encoding the whole gives (chunking.chunk_ranges, whose cut search reads
    windows of scan_bytes), so the ids equal tokenizer.encode(whole text) for any special tokens.
    """
    from tinylm.corpus import is_single_plain_text

    if not is_single_plain_text(input_path):
        from tinylm.tokenizer.corpus_arrays import encode_corpus

        return encode_corpus(tokenizer, input_path, output_path, read_options, num_workers=num_workers, chunk_bytes=chunk_bytes,
                             scan_bytes=scan_bytes, progress=progress, read_stats=read_stats)
    src = check_input_file(input_path)
    out = output_file(output_path)
    if chunk_bytes < 1 or scan_bytes < 1:
        raise ConfigError(f"chunk_bytes and scan_bytes must be positive, got {chunk_bytes} and {scan_bytes}")
    dtype = token_dtype(tokenizer.vocab_size)
    as_npy = out.suffix == ".npy"
    size = src.stat().st_size
    pieces = [(str(src), s, e) for s, e in chunk_ranges(src, tokenizer.special_tokens, chunk_bytes, scan_bytes=scan_bytes)]
    tokenizer.encode("")  # compiles the special-token matcher here, once, before worker processes fork
    workers = num_workers or os.cpu_count() or 1
    with atomic_write(out) as f:
        if as_npy:
            f.write(b"\0" * _NPY_HEADER_BYTES)  # a placeholder: the header holds the length, known at the end
        num_tokens = _write_token_ids(f, tokenizer, pieces, dtype, 1 if len(pieces) <= 1 else workers, size, progress)
        if as_npy:
            f.seek(0)
            f.write(_npy_header(dtype, num_tokens))
    info = EncodedFileInfo(str(src), size, num_tokens, dtype.name, tokenizer.vocab_size, "npy" if as_npy else "bin")
    atomic_write_bytes(sidecar_path(out), json.dumps(asdict(info), indent=1).encode())
    return info


def _write_token_ids(f, tokenizer: Tokenizer, pieces: list, dtype: np.dtype, workers: int, size: int, progress: bool) -> int:
    """Encode the pieces (path, start, end) in `workers` threads (C encoder) or processes and write their ids to f in file order.

    Returns the number of ids written; a progress bar over the file's `size` bytes when `progress`.
    """
    from tinylm.progress import progress_bar

    num_tokens = 0
    try:
        with map_pieces(_encode_range, pieces, workers, initializer=_init_worker, initargs=(tokenizer, dtype.str),
                        threads=use_threads(tokenizer)) as results, \
                progress_bar(total=size, unit="B", unit_scale=True, desc="encoding", disable=not progress, leave=False) as bar:
            for n, ids in results:
                f.write(np.ascontiguousarray(ids, dtype=dtype).data)
                num_tokens += len(ids)
                bar.update(n)
    finally:
        _WORKER_TOKENIZER.clear()
    return num_tokens


def output_file(output_path: str | os.PathLike) -> Path:
    """The output path as a Path, its folder created; OutputError when it is a folder or cannot be made."""
    out = Path(output_path)
    if out.is_dir():
        raise OutputError(f"output path is a directory: {out}")
    if not out.parent.exists():
        try:
            out.parent.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {out.parent}: {exc.strerror}") from None
    return out


def sidecar_path(token_file: str | os.PathLike) -> Path:
    p = Path(token_file)
    return p.with_name(p.name + ".json")


def load_info(token_file: str | os.PathLike) -> EncodedFileInfo | None:
    """The sidecar written by encode_file, or None for a token file made elsewhere."""
    p = sidecar_path(token_file)
    if not p.exists():
        return None
    try:
        return EncodedFileInfo(**json.loads(p.read_text()))
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{p} is not a token-file sidecar written by `tinylm encode` ({exc}); delete it or re-encode") from None
