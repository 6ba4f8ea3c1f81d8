"""kill -9 of `tinylm train-bpe` and `tinylm encode` at random moments: the output is either
absent or complete and correct, never half-written under its final name."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinylm import Tokenizer

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill")
    text = (FIXTURES / "corpus.en").read_text() + "\n<|endoftext|>\n" + (FIXTURES / "tinystories_sample.txt").read_text()
    path = d / "corpus.txt"
    path.write_text(text * 12)  # ~1.6 MB: a run of about a second
    return path


def _run(args):
    return subprocess.Popen([sys.executable, "-m", "tinylm", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_at_random(args, rng, max_delay):
    proc = _run(args)
    time.sleep(rng.uniform(0, max_delay))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _check_tokenizer_folder(out: Path, reference: Tokenizer):
    names = {"vocab.json", "merges.txt", "special_tokens.json"}
    present = {p.name for p in out.iterdir()} & names if out.exists() else set()
    if present == names:  # tinylm's own files are renamed last: tokenizer.json is complete too
        for tok in (Tokenizer.from_dir(out), Tokenizer.from_file(out / "tokenizer.json")):
            assert tok.merges == reference.merges and tok.vocab == reference.vocab
    else:
        assert present <= {"vocab.json", "merges.txt"}  # renames are the last, instant step


def _kill_loop(corpus, tmp_path, times, seed):
    rng = random.Random(seed)
    ref_dir = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "tinylm", "train-bpe", str(corpus), "-v", "600", "-o", str(ref_dir), "--no-progress"], check=True, capture_output=True)
    reference = Tokenizer.from_dir(ref_dir)
    subprocess.run([sys.executable, "-m", "tinylm", "encode", str(corpus), "-t", str(ref_dir), "-o", str(tmp_path / "ref.npy"), "--no-progress"], check=True, capture_output=True)
    expected = np.load(tmp_path / "ref.npy")
    for i in range(times):
        out = tmp_path / f"tok{i}"
        _kill_at_random(["train-bpe", corpus, "-v", 600, "-o", out, "--no-progress", "--chunk-mb", 0.2], rng, 1.5)
        _check_tokenizer_folder(out, reference)
        arr = tmp_path / f"ids{i}.npy"
        _kill_at_random(["encode", corpus, "-t", ref_dir, "-o", arr, "--no-progress", "--chunk-mb", 0.2], rng, 1.5)
        if arr.exists():
            assert np.array_equal(np.load(arr), expected)
        assert not (tmp_path / f"ids{i}.npy.json").exists() or arr.exists()


def test_kill_train_bpe_and_encode(corpus, tmp_path):
    _kill_loop(corpus, tmp_path, times=3, seed=0)


@pytest.mark.slow
def test_kill_train_bpe_and_encode_20_times(corpus, tmp_path):
    _kill_loop(corpus, tmp_path, times=20, seed=1)
