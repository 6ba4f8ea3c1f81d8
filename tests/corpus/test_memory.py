"""Reading a corpus streams it: peak memory does not grow with a shard's size (.jsonl.gz and Parquet
shards encoded and counted in a fresh process with one worker: its peak RSS after a warm-up read of
a 1 MB shard; and the Python objects the readers hold at once, by tracemalloc)."""

import gzip
import json
import random
import subprocess
import sys
import textwrap

import pytest

MEASURE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tinylm import Tokenizer
    from tinylm.peak_memory import peak_rss_mb
    from tinylm.tokenizer.token_arrays import encode_file
    from tinylm.tokenizer.train import count_corpus_pretokens
    fixtures, small, shard = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    tok = Tokenizer.from_files(fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt", ["<|endoftext|>"])
    def read(path):
        info = encode_file(tok, path, path.with_name("o.bin"), num_workers=1, chunk_bytes=1 << 20)
        counts, stats, text_bytes = count_corpus_pretokens(path, ["<|endoftext|>"], num_workers=1, chunk_bytes=1 << 20)
        return info.num_bytes, text_bytes
    read(small)  # the same path on a shard of one piece: imports, tables, caches, allocator arenas
    before = peak_rss_mb()  # VmHWM of this fresh process: the shards were written by another one
    encoded, counted = read(shard)
    print(encoded, counted, peak_rss_mb() - before)
    """
)


def _documents(fixtures, size: int):
    words = ((fixtures / "tinystories_sample.txt").read_text() + (fixtures / "german.txt").read_text()).split()
    rng = random.Random(0)
    written = 0
    while written < size:
        doc = " ".join(rng.choices(words, k=rng.randrange(50, 3000)))
        written += len(doc.encode())
        yield doc


def _write_shard(folder, fixtures, size: int, kind: str):
    if kind == "jsonl.gz":
        shard = folder / "c.jsonl.gz"
        with gzip.open(shard, "wt", compresslevel=1, encoding="utf-8") as f:
            for doc in _documents(fixtures, size):
                f.write(json.dumps({"text": doc}) + "\n")
        return shard
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = folder / "c.parquet"
    with pq.ParquetWriter(shard, pa.schema([("text", pa.string())])) as writer:
        batch = []
        for doc in _documents(fixtures, size):
            batch.append(doc)
            if len(batch) == 200:  # row groups of ~300 KB of text
                writer.write_table(pa.table({"text": batch}))
                batch = []
        writer.write_table(pa.table({"text": batch}))
    return shard


def _growth(tmp_path, fixtures, size, kind):
    """Peak RSS growth (MB) reading a shard of `size` bytes of text, after reading one of 1 MB the same way."""
    (tmp_path / "small").mkdir()
    small = _write_shard(tmp_path / "small", fixtures, 1_000_000, kind)
    shard = _write_shard(tmp_path, fixtures, size, kind)
    r = subprocess.run([sys.executable, "-c", MEASURE, str(fixtures), str(small), str(shard)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    encoded, counted, growth = r.stdout.split()
    assert int(encoded) == int(counted) >= size
    return float(growth)


def test_corpus_reading_memory_bounded_small(tmp_path, fixtures):
    # 16 MB of text in one .jsonl.gz, encoded and counted; holding it whole would grow the peak by 16 MB
    # of text plus its bytes. Reading a plain .txt the original way grows it by 3-6 MB here (allocator noise).
    growth = _growth(tmp_path, fixtures, 16_000_000, "jsonl.gz")
    assert growth < 12, f"peak RSS grew by {growth:.0f} MB reading 16 MB of text"


@pytest.mark.parametrize("kind", ["jsonl.gz", "parquet"])
def test_reader_holds_a_batch_not_the_shard(tmp_path, fixtures, kind):
    # Python allocations while reading a shard's text (tracemalloc: exact, unlike RSS, which
    # pyarrow's allocator moves by 10-25 MB whatever the file's size; the slow test bounds RSS at 400 MB).
    import tracemalloc

    from tinylm.corpus import ReadOptions, ReadStats, corpus_text, resolve_shards

    shard = _write_shard(tmp_path, fixtures, 8_000_000, kind)
    tracemalloc.start()
    try:
        total = sum(len(block) for block in corpus_text(resolve_shards(shard), ReadOptions(), ReadStats()))
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert total > 7_500_000  # characters (the shard holds 8 MB of UTF-8)
    assert peak < 4, f"reading held {peak:.1f} MB of Python objects at once"  # a 256K-character block, a batch of 64 rows


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jsonl.gz", "parquet"])
def test_corpus_reading_memory_bounded_400mb(tmp_path, fixtures, kind):
    growth = _growth(tmp_path, fixtures, 400_000_000, kind)
    assert growth < 40, f"peak RSS grew by {growth:.0f} MB reading 400 MB of text"  # the small test's bound plus pyarrow's allocator
