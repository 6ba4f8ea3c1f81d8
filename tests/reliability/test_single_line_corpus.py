"""A corpus with no special token and no newline at all (one huge line) is still read in bounded
pieces: cuts fall before a space followed by a letter, so memory does not grow with the file."""

import random
import subprocess
import sys
import textwrap

import pytest

from tinylm import train_bpe
from tinylm.tokenizer.chunking import _SCAN_WINDOW, chunk_ranges


def _write_single_line(path, size, seed=0):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    with open(path, "w") as f:
        written = 0
        while written < size:
            block = " ".join(rng.choices(words, k=50_000)) + " "
            f.write(block)
            written += len(block)


def test_single_line_is_cut_into_bounded_pieces(tmp_path):
    path = tmp_path / "line.txt"
    _write_single_line(path, 3_000_000)
    ranges = list(chunk_ranges(path, ["<|endoftext|>"], 200_000))
    assert len(ranges) >= 10
    assert max(e - s for s, e in ranges) <= 200_000 + _SCAN_WINDOW
    serial = train_bpe(path, 400, ["<|endoftext|>"], num_workers=1, chunk_bytes=10**9)
    chunked = train_bpe(path, 400, ["<|endoftext|>"], num_workers=2, chunk_bytes=200_000)
    assert chunked == serial


@pytest.mark.slow
def test_500mb_single_line_trains_in_bounded_memory(tmp_path):
    path = tmp_path / "line.txt"
    _write_single_line(path, 500_000_000)
    code = textwrap.dedent(
        f"""
        from tinylm import train_bpe
        from tinylm.peak_memory import children_peak_rss_mb, peak_rss_mb  # VmHWM: not pytest's peak
        train_bpe({str(path)!r}, 1000, ["<|endoftext|>"])
        print(peak_rss_mb(), children_peak_rss_mb())
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    own, child = map(float, r.stdout.split())
    assert own < 300 and child < 300, (own, child)  # MB, for a 500 MB file
