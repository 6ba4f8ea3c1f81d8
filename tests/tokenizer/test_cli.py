"""The tokenizer commands end to end, and their one-line errors (no tracebacks)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures"


def tinylm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_train_encode_stats_pipeline(tmp_path):
    out = tmp_path / "tok"
    r = tinylm("train-bpe", FIXTURES / "corpus.en", "--vocab-size", 500, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "peak memory" in r.stdout and "longest token" in r.stdout
    assert json.loads((out / "vocab.json").read_text())["<|endoftext|>"] == 0
    merges = (out / "merges.txt").read_text().splitlines()
    assert merges[1:] == (FIXTURES / "train-bpe-reference-merges.txt").read_text().splitlines()

    r = tinylm("encode", FIXTURES / "tinystories_sample.txt", "-t", out, "-o", tmp_path / "ts.npy", "--no-progress")
    assert r.returncode == 0, r.stderr
    ids = np.load(tmp_path / "ts.npy")
    assert ids.dtype == np.uint16 and (ids == 0).sum() == (FIXTURES / "tinystories_sample.txt").read_text().count("<|endoftext|>")

    r = tinylm("tokenizer-stats", FIXTURES / "tinystories_sample.txt", "-t", out, "--top", 3)
    assert r.returncode == 0, r.stderr
    assert "bytes/token" in r.stdout and "825 GB" in r.stdout


def test_help_for_every_command():
    r = tinylm("--help")
    assert r.returncode == 0
    for cmd in ("train-bpe", "encode", "tokenizer-stats"):
        assert cmd in r.stdout
        sub = tinylm(cmd, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout


def _bad_input(folder: Path, kind: str) -> Path:
    if kind == "missing":
        return folder / "missing.txt"
    if kind == "directory":
        return folder
    path = folder / f"{kind}.txt"
    path.write_bytes(b"" if kind == "empty" else b"ok text " * 10 + b"\xc3\x28 more")
    return path


@pytest.mark.parametrize(
    "kind, needles",
    [("missing", ["not found"]), ("directory", ["directory"]), ("empty", ["empty"]), ("invalid", ["invalid UTF-8", "offset 80"])],
)
def test_train_bpe_bad_input(tmp_path, kind, needles):
    path = _bad_input(tmp_path, kind)
    r = tinylm("train-bpe", path, "--vocab-size", 300, "--out", tmp_path / "out", "--no-progress")
    assert_one_line_error(r, *needles)
    assert not (tmp_path / "out" / "vocab.json").exists()


def test_train_bpe_impossible_settings(tmp_path):
    r = tinylm("train-bpe", FIXTURES / "corpus.en", "--vocab-size", 200, "--out", tmp_path)
    assert_one_line_error(r, "at least 256")
    r = tinylm("train-bpe", FIXTURES / "corpus.en", "-s", "<|a|>", "-s", "<|a|>", "--out", tmp_path)
    assert_one_line_error(r, "twice")
    r = tinylm("train-bpe", FIXTURES / "corpus.en", "-s", "", "--out", tmp_path)
    assert_one_line_error(r, "empty")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder should go: unwritable even for root
    r = tinylm("train-bpe", FIXTURES / "corpus.en", "--vocab-size", 300, "--out", blocker / "tok")
    assert_one_line_error(r, "cannot write")


def test_encode_with_broken_tokenizer_folder(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_text('{"a": 0')
    (tmp_path / "tok" / "merges.txt").write_text("")
    r = tinylm("encode", FIXTURES / "corpus.en", "-t", tmp_path / "tok", "-o", tmp_path / "x.npy")
    assert_one_line_error(r, "vocab")
    r = tinylm("encode", FIXTURES / "corpus.en", "-t", tmp_path / "nothere", "-o", tmp_path / "x.npy")
    assert_one_line_error(r, "not found")
