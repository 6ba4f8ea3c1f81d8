"""Reading shards as documents, streamed: decompression, JSON Lines records, Parquet row groups.

A part is a slice of one shard that one worker reads: a byte range of an uncompressed `.txt` or
`.jsonl` file (cut after a newline), a range of a Parquet file's row groups, or a whole compressed
file (a compressed stream cannot be entered in the middle). Its text is `lead` followed by its
documents joined by the separator: exactly its slice of the text a conversion to `.txt` would
give, so the parts of a corpus, concatenated, are that text (see `tinylm.corpus.corpus_text`).

Memory: a JSON Lines part holds one record at a time, a Parquet part one row group's column, a
text part one block; never a whole shard.
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import json
import lzma
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tinylm.corpus.shards import Shard
from tinylm.errors import CorpusError, InvalidUTF8Error, MissingExtraError

from tinylm.corpus.bundled import DOC_SEPARATOR
READ_BLOCK = 1 << 20  # bytes of plain (or zstandard-compressed) input read at a time
COMPRESSED_READ_BLOCK = 1 << 16  # decompressed bytes taken from a gzip / bzip2 / xz stream at a time
TEXT_BLOCK_CHARS = 1 << 18  # documents are joined into text blocks of about this many characters
PARQUET_BATCH_ROWS = 64  # rows of a Parquet column decoded into Python strings at a time


@dataclass(frozen=True)
class ReadOptions:
    """How records become documents: the JSON field / Parquet column, what to do with a bad record, the separator."""

    text_field: str = "text"
    skip_bad_records: bool = False
    separator: str = DOC_SEPARATOR


@dataclass
class ReadStats:
    """What reading found: documents read, bad records passed over under --skip-bad-records (and the first one's message)."""

    documents: int = 0
    skipped: int = 0
    first_skipped: str | None = None

    def skip(self, message: str) -> None:
        self.skipped += 1
        self.first_skipped = self.first_skipped or message

    def merge(self, other: "ReadStats") -> None:
        self.documents += other.documents
        self.skipped += other.skipped
        self.first_skipped = self.first_skipped or other.first_skipped

    def summary(self) -> str:
        """One line for the command's report ("" when nothing was skipped)."""
        return f"skipped {self.skipped:,} bad record(s); the first: {self.first_skipped}" if self.skipped else ""


@dataclass(frozen=True)
class Part:
    """A slice of a shard read by one worker: bytes [start, end) of a plain file, row groups [start, end)
    of a Parquet file, or (start, end) = (0, -1) for a whole compressed file. lead: the text before it
    in the corpus's text ("" when it continues a .txt file, else the separator; "" for the corpus's first)."""

    shard: Shard
    start: int
    end: int
    lead: str
    disk_bytes: int = field(compare=False)


def require(module: str, extra: str = "corpus"):
    """Import an optional package, or one MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = {"pyarrow.parquet": "pyarrow"}.get(module, module)
        raise MissingExtraError(f"reading this corpus needs the optional package {package!r}: pip install 'tinylm[{extra}]'") from None


# --- decompression -------------------------------------------------------------------------------
_OPENERS = {"gz": gzip.open, "bz2": bz2.open, "xz": lzma.open}


def decompressed_blocks(shard: Shard) -> Iterator[bytes]:
    """The shard's bytes, decompressed, in blocks; CorpusError for a truncated or corrupt stream."""
    try:
        if shard.compression is None:
            with open(shard.path, "rb") as f:
                while block := f.read(READ_BLOCK):
                    yield block
        elif shard.compression == "zst":
            yield from _zstd_blocks(shard.path)
        else:
            with _OPENERS[shard.compression](shard.path, "rb") as f:
                while block := f.read(COMPRESSED_READ_BLOCK):  # small: a truncated stream yields what came before it
                    yield block
    except (EOFError, OSError, lzma.LZMAError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise CorpusError(f"cannot read {shard.path}: {exc.strerror}") from None
        raise CorpusError(f"{shard.path}: the {shard.compression} stream is truncated or corrupt ({exc})") from None


def _zstd_blocks(path: Path) -> Iterator[bytes]:
    """Zstandard frames one after another; a stream that ends inside a frame is an error (the
    library's stream reader would just stop there)."""
    zstandard = require("zstandard")
    dobj = zstandard.ZstdDecompressor().decompressobj()
    pending = False  # inside a frame
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            while block:
                try:
                    out = dobj.decompress(block)
                except zstandard.ZstdError as exc:
                    raise EOFError(f"corrupt: {exc}") from None
                if out:
                    yield out
                pending = not dobj.eof
                block = dobj.unused_data if dobj.eof else b""
                if dobj.eof:
                    dobj = zstandard.ZstdDecompressor().decompressobj()
                    pending = bool(block)
    if pending:
        raise EOFError("the file ends inside a frame")


def _lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines (without their newline) of a byte stream given in blocks."""
    rest = b""
    for block in blocks:
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _decoded(blocks: Iterable[bytes], path: Path) -> Iterator[str]:
    """UTF-8 text of a byte stream given in blocks; InvalidUTF8Error with the offset in the (decompressed) stream."""
    carry, offset = b"", 0
    for block in blocks:
        data = carry + block
        try:
            text, carry = data.decode("utf-8"), b""
        except UnicodeDecodeError as exc:
            if exc.reason != "unexpected end of data" or len(data) - exc.start > 3:
                raise InvalidUTF8Error(path, offset + exc.start, exc.reason) from None
            text, carry = data[: exc.start].decode("utf-8"), data[exc.start :]
        offset += len(data) - len(carry)
        yield text
    if carry:
        try:
            carry.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidUTF8Error(path, offset + exc.start, exc.reason) from None


# --- records -------------------------------------------------------------------------------------
def _record_text(line: bytes, text_field: str) -> str:
    """The document of one JSON Lines record; ValueError saying what is wrong with it."""
    try:
        record = json.loads(line)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"invalid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"the record is a JSON {type(record).__name__}, not an object")
    if text_field not in record:
        raise ValueError(f"no field {text_field!r} (fields: {', '.join(map(repr, list(record)[:8])) or 'none'}; choose one with --text-field)")
    value = record[text_field]
    if not isinstance(value, str):
        raise ValueError(f"field {text_field!r} is a JSON {type(value).__name__ if value is not None else 'null'}, not a string")
    return value


def jsonl_documents(part: Part, options: ReadOptions, stats: ReadStats) -> Iterator[str]:
    """The documents of a JSON Lines part, one record at a time (blank lines hold no record)."""
    shard = part.shard
    blocks = decompressed_blocks(shard) if shard.compression else _byte_range(shard.path, part.start, part.end)
    lines, i = _lines(blocks), 0
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except CorpusError as exc:  # a truncated or corrupt stream: say how far it got
            raise CorpusError(f"{exc}, after line {i}" if i else f"{exc}, before the end of line 1") from None
        yield from _record_or_skip(line, i, part, options, stats)
        i += 1


def _record_or_skip(line: bytes, i: int, part: Part, options: ReadOptions, stats: ReadStats) -> Iterator[str]:
    """The line's document (none for a blank line or a skipped bad record); CorpusError for a bad one."""
    if not line.strip():
        return
    try:
        yield _record_text(line, options.text_field)
    except ValueError as exc:
        line_no = _line_number(part.shard.path, part.start) + i  # counted only when needed: the part may start mid-file
        message = f"{part.shard.path}: line {line_no}: {exc}"
        if not options.skip_bad_records:
            raise CorpusError(message + " (pass --skip-bad-records to skip such records)") from None
        stats.skip(message)


def _byte_range(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0 and (block := f.read(min(READ_BLOCK, left))):
            left -= len(block)
            yield block


def _line_number(path: Path, offset: int) -> int:
    """The 1-based number of the line that starts at byte offset of an uncompressed file."""
    return 1 + sum(block.count(b"\n") for block in _byte_range(path, 0, offset))


def parquet_documents(part: Part, options: ReadOptions, stats: ReadStats) -> Iterator[str]:
    """The documents of a Parquet part: its row groups' text column only, decoded in batches of
    PARQUET_BATCH_ROWS rows (pyarrow's iter_batches), so about one row group's compressed column
    and one batch's strings are held at a time."""
    pf = open_parquet(part.shard.path, options.text_field)
    pool = require("pyarrow").default_memory_pool()
    row = sum(pf.metadata.row_group(g).num_rows for g in range(part.start))
    batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=range(part.start, part.end), columns=[options.text_field])
    for batch in batches:
        values = batch.column(0).to_pylist()
        for i, value in enumerate(values):
            if isinstance(value, str):
                yield value
                continue
            message = f"{part.shard.path}: row {row + i}: column {options.text_field!r} is null"
            if not options.skip_bad_records:
                raise CorpusError(message + " (pass --skip-bad-records to skip such rows)")
            stats.skip(message)
        row += len(values)
        del values, batch
        pool.release_unused()  # the allocator would otherwise keep every batch's pages: memory would grow with the shard


def open_parquet(path: Path, column: str):
    """A pyarrow ParquetFile whose `column` holds strings; CorpusError naming the file otherwise."""
    pq = require("pyarrow.parquet")
    pa = require("pyarrow")
    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)  # streamed: no whole row groups (or files) pre-read
    except (OSError, pa.ArrowException) as exc:
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = pf.schema_arrow
    if schema.get_field_index(column) == -1:
        raise CorpusError(f"{path}: no column {column!r} (columns: {', '.join(map(repr, schema.names))}; choose one with --text-field)")
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or getattr(pa.types, "is_string_view", lambda t: False)(kind)):
        raise CorpusError(f"{path}: column {column!r} holds {kind}, not strings")
    return pf


# --- parts ---------------------------------------------------------------------------------------
def plan_parts(shards: list[Shard], options: ReadOptions, piece_bytes: int,
               text_ranges: Callable[[Path], Iterable[tuple[int, int]]]) -> list[Part]:
    """The corpus cut into parts in order, each about piece_bytes of input or one indivisible unit.

    text_ranges(path): byte ranges of an uncompressed .txt file, cut where its text may be split
    (tokenizer.chunking.chunk_ranges). JSON Lines files are cut after a newline, Parquet files
    between row groups, compressed files not at all.
    """
    parts: list[Part] = []
    for shard in shards:
        lead = options.separator if parts else ""
        if shard.compression is not None:
            ranges = [(0, -1, shard.path.stat().st_size)]
        elif shard.format == "txt":
            ranges = [(s, e, e - s) for s, e in text_ranges(shard.path)]
        elif shard.format == "jsonl":
            ranges = [(s, e, e - s) for s, e in line_ranges(shard.path, piece_bytes)]
        else:
            ranges = row_group_ranges(shard.path, options.text_field, piece_bytes)
        for k, (start, end, size) in enumerate(ranges):
            joiner = lead if k == 0 else ("" if shard.format == "txt" else options.separator)
            parts.append(Part(shard, start, end, joiner, size))
    return parts


def line_ranges(path: Path, piece_bytes: int) -> Iterator[tuple[int, int]]:
    """Byte ranges of a file, each at least piece_bytes long (but the last), ending just after a newline."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = 0
        while start < size:
            f.seek(min(start + piece_bytes, size) - 1)
            f.readline()
            end = min(f.tell(), size)
            yield start, end
            start = end


def row_group_ranges(path: Path, column: str, piece_bytes: int) -> list[tuple[int, int, int]]:
    """(first, end, compressed bytes) of runs of row groups holding about piece_bytes of the column."""
    meta = open_parquet(path, column).metadata
    index = [meta.schema.column(i).path for i in range(meta.num_columns)].index(column)  # leaf columns: nested ones count each leaf
    out, first, size = [], 0, 0
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).column(index).total_compressed_size
        if size >= piece_bytes or g == meta.num_row_groups - 1:
            out.append((first, g + 1, size))
            first, size = g + 1, 0
    return out


def part_text(part: Part, options: ReadOptions, stats: ReadStats, lead: str | None = None) -> Iterator[str]:
    """The part's slice of the corpus text, in blocks: the lead, then its documents joined by the separator.

    lead (default part.lead) is written before the first document only: a part whose records were
    all skipped (or blank) adds nothing, not even a separator. stats.documents counts the
    documents read (a .txt part is one).
    """
    shard = part.shard
    lead = part.lead if lead is None else lead
    if shard.format == "txt":
        stats.documents += 1
        if lead:
            yield lead
        blocks = decompressed_blocks(shard) if shard.compression else _byte_range(shard.path, part.start, part.end)
        offset = part.start if shard.compression is None else 0
        try:
            yield from _decoded(blocks, shard.path)
        except InvalidUTF8Error as exc:
            raise InvalidUTF8Error(exc.path, offset + exc.offset, exc.reason) from None
        return
    documents = jsonl_documents(part, options, stats) if shard.format == "jsonl" else parquet_documents(part, options, stats)
    yield from _joined(documents, options.separator, lead, stats)


def _joined(documents: Iterable[str], separator: str, lead: str, stats: ReadStats) -> Iterator[str]:
    """lead + separator.join(documents) (nothing without documents), in blocks of about TEXT_BLOCK_CHARS."""
    batch: list[str] = []
    chars, first = 0, True
    for doc in documents:
        batch.append(lead if first else separator)
        first = False
        batch.append(doc)
        stats.documents += 1
        chars += len(doc)
        if chars >= TEXT_BLOCK_CHARS:
            yield "".join(batch)
            batch, chars = [], 0
    if batch:
        yield "".join(batch)


def corpus_text(shards: list[Shard], options: ReadOptions, stats: ReadStats) -> Iterator[str]:
    """The whole corpus's text in blocks, in one stream: what converting it to one .txt file gives."""
    whole = 1 << 62
    for part in plan_parts(shards, options, whole, lambda path: [(0, path.stat().st_size)]):
        yield from part_text(part, options, stats, "" if stats.documents == 0 else None)


def corpus_documents(shards: list[Shard], options: ReadOptions, stats: ReadStats, split_on: str | None = None) -> Iterator[str]:
    """The documents of the corpus's text: its text split on split_on (default: the separator), as str.split would."""
    split_on = options.separator if split_on is None else split_on
    if not split_on:
        raise ValueError("split_on must not be empty")
    buf = ""
    for block in corpus_text(shards, options, stats):
        *done, buf = (buf + block).split(split_on)
        yield from done
    yield buf
