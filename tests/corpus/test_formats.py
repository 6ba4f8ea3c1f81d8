"""Every format and compression gives what its conversion to one .txt file gives (issue 13, "Corpora in"):
identical BPE merges, identical token arrays, identical tokenizer-stats samples, with one and two
workers and with pieces small enough that shards are split (byte ranges, row groups)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tinylm import Tokenizer, train_bpe
from tinylm.tokenizer.token_arrays import encode_file
from tinylm.tokenizer.stats import sample_documents

_spec = importlib.util.spec_from_file_location("corpus_writers", Path(__file__).parent / "writers.py")
writers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writers)
EOT, KINDS, as_txt, write_shard = writers.EOT, writers.KINDS, writers.as_txt, writers.write_shard

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """Real stories and German text as documents (non-ASCII, newlines, empty lines inside)."""
    docs = [d.strip("\n") for d in (FIXTURES / "tinystories_sample.txt").read_text().split(EOT) if d.strip()]
    german = [g for g in (FIXTURES / "german.txt").read_text().split("\n\n") if g.strip()][:6]
    lines = (FIXTURES / "corpus.en").read_text().splitlines()
    english = ["\n".join(lines[i : i + 10]) for i in range(0, 300, 10)]  # 30 documents of 10 lines
    return docs + german + ["", "  leading space and a tab\t"] + english


@pytest.fixture(scope="module")
def reference(tmp_path_factory, documents):
    """(txt path, merges, tokenizer, ids) of the corpus written as .txt."""
    folder = tmp_path_factory.mktemp("ref")
    txt = folder / "corpus.txt"
    txt.write_text(as_txt([documents]), encoding="utf-8")
    vocab, merges = train_bpe(txt, 420, [EOT], num_workers=1)
    tok = Tokenizer(vocab, merges, [EOT])
    return txt, (vocab, merges), tok, tok.encode(txt.read_text(encoding="utf-8"))


def _kind_id(kind):
    return kind[0] + kind[1]


@pytest.mark.parametrize("kind", KINDS, ids=[_kind_id(k) for k in KINDS])
@pytest.mark.parametrize("workers", [1, 2])
def test_one_shard_of_every_kind_trains_and_encodes_like_its_txt(tmp_path, documents, reference, kind, workers):
    txt, trained, tok, ids = reference
    shard = write_shard(tmp_path / ("c" + kind[0] + kind[1]), documents)
    assert train_bpe(shard, 420, [EOT], num_workers=workers, chunk_bytes=700) == trained
    info = encode_file(tok, shard, tmp_path / "o.npy", num_workers=workers, chunk_bytes=700)
    assert np.load(tmp_path / "o.npy").tolist() == ids
    assert info.num_tokens == len(ids) and info.num_bytes == txt.stat().st_size
    assert sample_documents(shard, EOT, 5, seed=3) == sample_documents(txt, EOT, 5, seed=3)


def test_a_folder_and_a_glob_of_mixed_shards_equal_their_txt(tmp_path, documents):
    # Shards in sorted path order; every document boundary (inside and between shards) is an EOT.
    folder = tmp_path / "shards"
    (folder / "sub").mkdir(parents=True)
    groups = [documents[i : i + 7] for i in range(0, len(documents), 7)]
    names = ["a.jsonl.zst", "b.parquet", "c.txt", "d.txt.gz", "sub/e.json.gz", "sub/f.jsonl"]
    for name, docs in zip(names, groups):
        write_shard(folder / name, docs)
    used = groups[: len(names)]
    txt = tmp_path / "all.txt"
    txt.write_text(as_txt(used), encoding="utf-8")
    trained = train_bpe(txt, 400, [EOT], num_workers=1)
    tok = Tokenizer(*trained, [EOT])
    for spec in (folder, f"{folder}/**/*.*"):
        for workers in (1, 2):
            assert train_bpe(spec, 400, [EOT], num_workers=workers, chunk_bytes=500) == trained
            encode_file(tok, spec, tmp_path / "o.bin", num_workers=workers, chunk_bytes=500)
            assert np.fromfile(tmp_path / "o.bin", dtype=np.uint16).tolist() == tok.encode(txt.read_text(encoding="utf-8"))


def test_parquet_is_read_by_row_group(tmp_path, documents, reference):
    import pyarrow.parquet as pq

    from tinylm.corpus import ReadOptions, plan_parts, resolve_shards

    shard = write_shard(tmp_path / "c.parquet", documents, row_group_size=2)
    assert pq.ParquetFile(shard).metadata.num_row_groups > 5
    parts = plan_parts(resolve_shards(shard), ReadOptions(), 1, lambda p: [])
    assert [(p.start, p.end) for p in parts] == [(g, g + 1) for g in range(pq.ParquetFile(shard).metadata.num_row_groups)]
    _, _, tok, ids = reference
    encode_file(tok, shard, tmp_path / "o.npy", num_workers=2, chunk_bytes=1)
    assert np.load(tmp_path / "o.npy").tolist() == ids


def test_text_field_names_the_column(tmp_path):
    import json

    shard = tmp_path / "c.jsonl"
    shard.write_text("".join(json.dumps({"text": "ignored", "body": f"doc {i}"}) + "\n" for i in range(4)))
    from tinylm.corpus import ReadOptions

    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    encode_file(tok, shard, tmp_path / "o.npy", read_options=ReadOptions(text_field="body"))
    assert tok.decode(np.load(tmp_path / "o.npy").tolist()) == EOT.join(f"doc {i}" for i in range(4))
