"""Tokenizer sub-commands: train-bpe, encode, tokenizer-stats."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from tinylm.tokenizer._native import AUTO, COUNT_BACKENDS, MERGE_BACKENDS

DEFAULT_SPECIAL = "<|endoftext|>"


def _peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest worker, in MB."""
    from tinylm.peak_memory import children_peak_rss_mb, peak_rss_mb

    return peak_rss_mb(), children_peak_rss_mb()


def _progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def _show_token(tok: bytes) -> str:
    return repr(tok.decode("utf-8", errors="replace"))


def corpus_options(command):
    """--text-field and --skip-bad-records: how records of JSON Lines / Parquet shards become documents."""
    command = click.option("--skip-bad-records", is_flag=True, help="Skip (and count) records that are not valid JSON or lack a string text field, instead of stopping at the first.")(command)
    return click.option("--text-field", default="text", show_default=True, help="JSON field / Parquet column holding each document's text.")(command)


def _read_options(text_field: str, skip_bad_records: bool):
    from tinylm.corpus import ReadOptions

    return ReadOptions(text_field=text_field, skip_bad_records=skip_bad_records)


def _echo_read(read) -> None:
    """The skipped-records line, when reading skipped any."""
    if read is not None and read.skipped:
        click.echo(f"  {read.summary()}")


@click.command("train-bpe")
@click.argument("input_path", type=click.Path(path_type=Path))
@click.option("--vocab-size", "-v", type=int, default=10_000, show_default=True, help="Total vocabulary: 256 bytes + special tokens + merges.")
@click.option("--special-token", "-s", "special_tokens", multiple=True, default=[DEFAULT_SPECIAL], show_default=True, help="Repeat for several.")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("tokenizer"), show_default=True, help="Folder for vocab.json, merges.txt, special_tokens.json, tokenizer.json, tokenizer.tiktoken.")
@click.option("--workers", "-j", type=int, default=None, help="Counting processes (default: all cores).")
@click.option("--chunk-mb", type=float, default=4.0, show_default=True, help="Size of the pieces workers read.")
@click.option("--max-memory", default=None, help="Budget for the pre-token table while counting (e.g. 4G); past it, counts spill to disk.")
@click.option("--spill-dir", type=click.Path(path_type=Path), default=None, help="Where spilled counts go (default: system temp folder).")
@click.option("--merge-backend", type=click.Choice(MERGE_BACKENDS), default=AUTO, show_default=True, help="Compiled or pure-Python merge loop (identical merges).")
@click.option("--count-backend", type=click.Choice(COUNT_BACKENDS), default=AUTO, show_default=True, help="Pre-tokens matched and counted in C, or with the regex module in Python (identical counts).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@corpus_options
def train_bpe_command(input_path, vocab_size, special_tokens, out_dir, workers, chunk_mb, max_memory, spill_dir, merge_backend, count_backend, progress,
                      text_field, skip_bad_records):
    """Train a byte-level BPE tokenizer on a corpus (GPT-2 pre-tokenization).

    INPUT_PATH: a .txt file (documents separated by <|endoftext|>), a .jsonl / .parquet shard (one
    document per record), any of them .gz/.bz2/.xz/.zst-compressed (not .parquet), or a folder or
    quoted glob of shards.
    """
    from tinylm.io import ensure_output_dir
    from tinylm.tokenizer.train import BpeTrainer
    from tinylm.units import parse_memory

    trainer = BpeTrainer(
        vocab_size, tuple(special_tokens), workers=workers, chunk_bytes=int(chunk_mb * (1 << 20)), progress=_progress(progress),
        max_memory=None if max_memory is None else parse_memory(max_memory), spill_dir=spill_dir, merge_backend=merge_backend, count_backend=count_backend,
        read_options=_read_options(text_field, skip_bad_records),
    )
    created = not Path(out_dir).exists()
    ensure_output_dir(out_dir)  # fail before the long work, not after
    t0 = time.perf_counter()
    try:
        tokenizer, stats = trainer.train(input_path)
    except BaseException:
        if created and not any(Path(out_dir).iterdir()):  # bad input or settings: leave no empty folder behind
            Path(out_dir).rmdir()
        raise
    tokenizer.save_dir(out_dir)
    vocab = tokenizer.vocab
    seconds = time.perf_counter() - t0
    own, child = _peak_rss_mb()
    specials = {t.encode("utf-8") for t in special_tokens}
    longest = max((t for t in vocab.values() if t not in specials), key=len)
    click.echo(f"trained {len(vocab):,} tokens ({stats.num_merges:,} merges) on {stats.input_bytes / 1e6:,.1f} MB in {seconds:.1f} s")
    click.echo(f"  counting {stats.count_seconds:.1f} s ({stats.distinct_pretokens:,} distinct pre-tokens, {stats.count_backend} pre-tokenizer), merging {stats.merge_seconds:.1f} s ({stats.merge_backend} loop)")
    click.echo(f"  peak memory: {own:,.0f} MB (main process), {child:,.0f} MB (largest worker)")
    if stats.spill_runs:
        click.echo(f"  pre-token counts spilled to disk {stats.spill_runs} time(s) to stay under --max-memory {max_memory}")
    _echo_read(stats.extra.get("read"))
    click.echo(f"  longest token: {_show_token(longest)} ({len(longest)} bytes)")
    click.echo(f"  wrote {out_dir}/vocab.json, merges.txt, special_tokens.json, tokenizer.json (Hugging Face), tokenizer.tiktoken (tiktoken)")


def _load_tokenizer(tokenizer_path: Path):
    """A tinylm tokenizer folder, a Hugging Face tokenizer.json, or a folder holding only tokenizer.json."""
    from tinylm.tokenizer.bpe import Tokenizer
    from tinylm.tokenizer.files import VOCAB_FILE
    from tinylm.tokenizer.hf_json import TOKENIZER_JSON_FILE

    path = Path(tokenizer_path)
    if path.suffix == ".tiktoken":
        from tinylm.errors import ConfigError

        raise ConfigError(f"{path} is a tiktoken rank file, which names neither the pattern nor the special tokens: pass the tokenizer folder or a tokenizer.json")
    if path.is_file():
        return Tokenizer.from_file(path)
    if path.is_dir() and not (path / VOCAB_FILE).exists() and (path / TOKENIZER_JSON_FILE).exists():
        return Tokenizer.from_file(path / TOKENIZER_JSON_FILE)
    return Tokenizer.from_dir(path)


@click.command("encode")
@click.argument("input_path", type=click.Path(path_type=Path))
@click.option("--tokenizer", "-t", "tokenizer_dir", type=click.Path(path_type=Path), required=True, help="Tokenizer folder (vocab.json + merges.txt) or a Hugging Face tokenizer.json.")
@click.option("--out", "-o", "output", type=click.Path(path_type=Path), required=True, help="Token file: .npy, or raw ids for .bin.")
@click.option("--workers", "-j", type=int, default=None, help="Encoding workers: threads with the C encoder, else processes (default: all cores).")
@click.option("--chunk-mb", type=float, default=4.0, show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: when stderr is a terminal).")
@corpus_options
def encode_command(input_path, tokenizer_dir, output, workers, chunk_mb, progress, text_field, skip_bad_records):
    """Encode a corpus into a uint16 (or uint32) token array for training.

    INPUT_PATH: a .txt file, .jsonl / .parquet shards (records joined by <|endoftext|>), compressed
    or not, or a folder or quoted glob of them; the ids are those of the corpus converted to one .txt.
    """
    from tinylm.corpus import ReadStats
    from tinylm.tokenizer.token_arrays import encode_file

    tok = _load_tokenizer(tokenizer_dir)
    t0 = time.perf_counter()
    read = ReadStats()
    info = encode_file(tok, input_path, output, num_workers=workers, chunk_bytes=int(chunk_mb * (1 << 20)), progress=_progress(progress),
                       read_options=_read_options(text_field, skip_bad_records), read_stats=read)
    seconds = time.perf_counter() - t0
    click.echo(
        f"encoded {info.num_bytes / 1e6:,.1f} MB into {info.num_tokens:,} tokens ({info.dtype}) in {seconds:.1f} s "
        f"({info.num_bytes / 1e6 / max(seconds, 1e-9):.1f} MB/s, {info.bytes_per_token:.2f} bytes/token) -> {output}"
    )
    _echo_read(read)


@click.command("tokenizer-stats")
@click.argument("input_path", type=click.Path(path_type=Path))
@click.option("--tokenizer", "-t", "tokenizer_dir", type=click.Path(path_type=Path), required=True, help="Tokenizer folder or a Hugging Face tokenizer.json.")
@click.option("--docs", "num_docs", type=int, default=1000, show_default=True, help="Documents sampled for the figures.")
@click.option("--separator", default=DEFAULT_SPECIAL, show_default=True, help="Document separator in the file.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--top", type=int, default=10, show_default=True, help="How many of the longest tokens to list.")
@corpus_options
def tokenizer_stats_command(input_path, tokenizer_dir, num_docs, separator, seed, top, text_field, skip_bad_records):
    """Compression (bytes/token), throughput and longest tokens of a tokenizer on a corpus
    (a .txt file, .jsonl / .parquet shards, compressed or not, a folder or quoted glob)."""
    from tinylm.corpus import ReadStats
    from tinylm.errors import ConfigError
    from tinylm.tokenizer.stats import PILE_BYTES, measure, sample_documents

    if num_docs < 1:
        raise ConfigError("--docs must be at least 1")
    tok = _load_tokenizer(tokenizer_dir)
    read = ReadStats()
    docs = sample_documents(input_path, separator, num_docs, seed, read_options=_read_options(text_field, skip_bad_records), read_stats=read)
    s = measure(tok, docs, top)
    click.echo(f"tokenizer: {tokenizer_dir} ({tok.vocab_size:,} tokens)")
    click.echo(f"sampled {s.documents:,} documents, {s.num_bytes / 1e6:,.2f} MB -> {s.num_tokens:,} tokens")
    if read.skipped:
        click.echo(read.summary())
    click.echo(f"compression: {s.bytes_per_token:.2f} bytes/token")
    click.echo(f"throughput: {s.bytes_per_second / 1e6:.2f} MB/s (one process, cold cache)")
    click.echo(f"time to encode the Pile ({PILE_BYTES / 1e9:.0f} GB) at this speed: {s.pile_seconds:,.0f} s ({s.pile_seconds / 3600:,.1f} h) on one process")
    click.echo("longest tokens:")
    for idx, t in s.longest_tokens:
        click.echo(f"  {idx:>7}  {len(t):>3} bytes  {_show_token(t)}")


COMMANDS = [train_bpe_command, encode_command, tokenizer_stats_command]
