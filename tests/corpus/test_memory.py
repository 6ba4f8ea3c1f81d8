"""Reading a corpus streams it: peak memory does not grow with a shard's size (a .jsonl.gz shard and
a Parquet shard, encoded and counted in this process, one worker)."""

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
    from tinylm.tokenizer.dataset import encode_file
    from tinylm.tokenizer.train import count_corpus_pretokens
    fixtures, shard = Path(sys.argv[1]), Path(sys.argv[2])
    tok = Tokenizer.from_files(fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt", ["<|endoftext|>"])
    tok.encode((fixtures / "tinystories_sample.txt").read_text())
    count_corpus_pretokens(fixtures / "tinystories_sample.txt", ["<|endoftext|>"], num_workers=1)  # imports and tables, once
    if shard.suffix == ".parquet":
        import pyarrow.parquet  # its import alone is ~10 MB
    before = peak_rss_mb()  # VmHWM of this fresh process: the shard was written by another one
    info = encode_file(tok, shard, shard.with_name("o.bin"), num_workers=1, chunk_bytes=1 << 20)
    counts, read, text_bytes = count_corpus_pretokens(shard, ["<|endoftext|>"], num_workers=1, chunk_bytes=1 << 20)
    print(info.num_bytes, text_bytes, peak_rss_mb() - before)
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
    shard = _write_shard(tmp_path, fixtures, size, kind)
    r = subprocess.run([sys.executable, "-c", MEASURE, str(fixtures), str(shard)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    encoded, counted, growth = r.stdout.split()
    assert int(encoded) == int(counted) >= size
    return float(growth)


@pytest.mark.parametrize("kind", ["jsonl.gz", "parquet"])
def test_corpus_reading_memory_bounded_small(tmp_path, fixtures, kind):
    # 24 MB of text; what is held at once: a 1 MiB block and piece, a record, a row group (~300 KB).
    growth = _growth(tmp_path, fixtures, 24_000_000, kind)
    assert growth < 22, f"peak RSS grew by {growth:.0f} MB reading 24 MB of text"  # holding the text whole would pass 24


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["jsonl.gz", "parquet"])
def test_corpus_reading_memory_bounded_400mb(tmp_path, fixtures, kind):
    growth = _growth(tmp_path, fixtures, 400_000_000, kind)
    assert growth < 22, f"peak RSS grew by {growth:.0f} MB reading 400 MB of text"
