"""The corpus options of the tokenizer commands and the quick start, end to end through the CLI."""

import importlib.util
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from tinylm.cli import main

_spec = importlib.util.spec_from_file_location("corpus_writers", Path(__file__).parent / "writers.py")
writers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writers)
EOT = writers.EOT
FIXTURES = Path(__file__).parent.parent / "fixtures"


def _docs() -> list[str]:
    return [d.strip("\n") for d in (FIXTURES / "tinystories_sample.txt").read_text().split(EOT) if d.strip()]


def test_train_encode_stats_on_shards_with_a_bad_record_skipped(tmp_path):
    docs = _docs()
    shard = tmp_path / "c.jsonl.gz"
    lines = [json.dumps({"body": d}) for d in docs] + ["{truncated rec"]
    shard.write_bytes(writers.compress(("\n".join(lines) + "\n").encode(), ".gz"))
    txt = tmp_path / "c.txt"
    txt.write_text(EOT.join(docs))
    runner = CliRunner()
    args = ["--text-field", "body", "--skip-bad-records", "-j", "1"]
    r = runner.invoke(main, ["train-bpe", str(shard), "-v", "300", "-o", str(tmp_path / "tok"), "--no-progress", *args])
    assert r.exit_code == 0, r.output
    assert f"skipped 1 bad record(s); the first: {shard}: line {len(docs) + 1}: invalid JSON" in r.output
    r = runner.invoke(main, ["train-bpe", str(txt), "-v", "300", "-o", str(tmp_path / "ref"), "--no-progress"])
    assert (tmp_path / "tok" / "merges.txt").read_text() == (tmp_path / "ref" / "merges.txt").read_text()

    r = runner.invoke(main, ["encode", str(shard), "-t", str(tmp_path / "tok"), "-o", str(tmp_path / "o.npy"), "--no-progress", *args])
    assert r.exit_code == 0 and "skipped 1 bad record(s)" in r.output, r.output
    runner.invoke(main, ["encode", str(txt), "-t", str(tmp_path / "tok"), "-o", str(tmp_path / "r.npy"), "--no-progress", "-j", "1"])
    assert np.array_equal(np.load(tmp_path / "o.npy"), np.load(tmp_path / "r.npy"))

    r = runner.invoke(main, ["tokenizer-stats", str(shard), "-t", str(tmp_path / "tok"), "--text-field", "body", "--skip-bad-records"])
    assert r.exit_code == 0 and f"sampled {len(docs)} documents" in r.output and "skipped 1 bad record(s)" in r.output, r.output


def test_a_bad_record_without_the_flag_is_one_error_line_and_no_output(tmp_path):
    shard = tmp_path / "c.jsonl"
    shard.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": ["a"]}) + "\n")
    r = CliRunner().invoke(main, ["train-bpe", str(shard), "-v", "300", "-o", str(tmp_path / "tok"), "--no-progress"])
    assert r.exit_code == 2
    assert r.stderr == f"error: {shard}: line 2: field 'text' is a JSON list, not a string (pass --skip-bad-records to skip such records)\n"
    assert not (tmp_path / "tok").exists()


def test_quickstart_reads_a_parquet_corpus(tmp_path):
    # The corpus stage only (the full quick start is tests/test_quickstart.py): documents, not bytes, are split.
    from tinylm.quickstart import QuickstartConfig, prepare_corpus

    docs = [f"story {i}: " + " ".join(["once upon a time"] * (i % 5 + 1)) for i in range(60)]
    writers.write_shard(tmp_path / "c.parquet", docs, row_group_size=7)
    info = prepare_corpus(QuickstartConfig(corpus=str(tmp_path / "c.parquet"), out_dir=str(tmp_path / "o")), tmp_path)
    assert (info["documents"], info["train_docs"], info["val_docs"]) == (60, 57, 3)
    assert (tmp_path / "val.txt").read_text().split(f"\n{EOT}\n")[0] == docs[19]
    small = prepare_corpus(QuickstartConfig(corpus=str(tmp_path / "c.parquet"), max_corpus_mb=0.001), tmp_path)
    assert small["truncated_to_mb"] == 0.001 and small["bytes"] <= 1000 and small["documents"] < 60
