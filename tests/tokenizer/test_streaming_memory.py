"""encode_iterable over a file handle keeps memory bounded whatever the file's size."""

import subprocess
import sys
import textwrap

import pytest

FIXTURES_CODE = textwrap.dedent(
    """
    import random, sys
    from pathlib import Path
    from tinylm import Tokenizer
    from tinylm.peak_memory import peak_rss_mb
    fixtures = Path(sys.argv[1]); out = Path(sys.argv[2]); size = int(sys.argv[3])
    base = (fixtures / "tinystories_sample.txt").read_text() + (fixtures / "german.txt").read_text()
    words = base.split()
    rng = random.Random(0)
    with open(out, "w", encoding="utf-8") as f:  # varied text: fresh pre-tokens keep arriving
        written = 0
        while written < size:
            block = " ".join(rng.choice(words) + (str(rng.randrange(10**6)) if rng.random() < 0.1 else "") for _ in range(20000))
            block += "\\n<|endoftext|>\\n" + base
            f.write(block)
            written += len(block)
    tok = Tokenizer.from_files(fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt", ["<|endoftext|>"])
    tok.encode(base)
    before = peak_rss_mb()  # VmHWM: ru_maxrss would start at the parent's (pytest's) peak
    n = 0
    with open(out, encoding="utf-8") as f:
        for _ in tok.encode_iterable(f):
            n += 1
    after = peak_rss_mb()
    print(n, after - before)
    """
)


def _peak_growth_mb(tmp_path, fixtures, size):
    r = subprocess.run([sys.executable, "-c", FIXTURES_CODE, str(fixtures), str(tmp_path / "big.txt"), str(size)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr
    tokens, growth = r.stdout.split()
    return int(tokens), float(growth)


def test_encode_iterable_memory_bounded_small(tmp_path, fixtures):
    tokens, growth = _peak_growth_mb(tmp_path, fixtures, 10_000_000)
    assert tokens > 1_500_000
    assert growth < 100, f"peak RSS grew by {growth:.0f} MB"


@pytest.mark.slow
def test_encode_iterable_memory_bounded_200mb(tmp_path, fixtures):
    tokens, growth = _peak_growth_mb(tmp_path, fixtures, 200_000_000)
    assert tokens > 30_000_000
    assert growth < 100, f"peak RSS grew by {growth:.0f} MB"
