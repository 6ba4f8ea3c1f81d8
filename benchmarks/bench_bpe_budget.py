"""BPE training with and without a memory budget for the pre-token table (`--max-memory`).

Runs `tinylm train-bpe` as a child process per setting and reports wall time, peak summed PSS of
the process tree (workers included) and how many times counts spilled to disk; checks that the
merges are identical with and without the budget.

    .venv/bin/python benchmarks/bench_bpe_budget.py --sizes 10000,32000 --budget 16M
    .venv/bin/python benchmarks/bench_bpe_budget.py --distinct-words 4000000 --sizes 1000 --budget 64M

--distinct-words N trains on a generated corpus (seed 0, written under data/) of N random lower-case
words of 5-11 letters: almost every pre-token is distinct, the case where the pre-token table,
not the corpus, sets the memory.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import DATA_DIR, ensure_corpus, print_table, run_measured  # noqa: E402

from tinylm.io import atomic_write  # noqa: E402


def distinct_words_corpus(n: int) -> Path:
    """N random words of 5-11 letters (seed 0), 100,000 to a line; made once under data/."""
    import numpy as np

    path = DATA_DIR / f"distinct_words_{n}.txt"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    DATA_DIR.mkdir(exist_ok=True)
    with atomic_write(path) as out:
        for start in range(0, n, 100_000):
            lengths = rng.integers(5, 12, min(100_000, n - start))
            chars = letters[rng.integers(0, 26, int(lengths.sum()))]
            out.write(b" ".join(w.tobytes() for w in np.split(chars, np.cumsum(lengths)[:-1])) + b"\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--sizes", default="10000,32000")
    ap.add_argument("--budget", default="16M", help="--max-memory for the budgeted runs")
    ap.add_argument("--distinct-words", type=int, default=None, help="use a generated corpus of N random words instead")
    args = ap.parse_args()
    path = args.input or (distinct_words_corpus(args.distinct_words) if args.distinct_words else ensure_corpus())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            outs = {}
            for label, extra in (("no budget", []), (f"--max-memory {args.budget}", ["--max-memory", args.budget])):
                out = Path(tmp) / f"{size}-{len(extra)}"
                cmd = [sys.executable, "-m", "tinylm", "train-bpe", str(path), "-v", str(size), "-o", str(out), "--no-progress", *extra]
                r = run_measured(cmd, label)
                outs[label] = out
                rows.append([f"{size:,}", label, f"{r.wall_s:.2f}", f"{r.peak_mb:.0f}", ""])
            same = filecmp.cmp(*(o / "merges.txt" for o in outs.values()), shallow=False)
            rows[-1][-1] = rows[-2][-1] = "identical" if same else "DIFFERENT"
    print_table(["vocab", "setting", "wall (s)", "peak summed PSS (MB)", "merges"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
