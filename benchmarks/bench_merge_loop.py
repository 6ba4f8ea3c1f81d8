"""Merge-loop benchmark: pure-Python `bpe_merges` vs the C extension `_bpe_merge.merge`.

Counts the pre-tokens of a corpus once (cached as a pickle under /tmp), then times only the
merge loop for each vocab size: median of N runs, both process time (CPU of this process;
robust on a shared machine) and wall time. Also checks the two produce identical merges.

    .venv/bin/python benchmarks/bench_merge_loop.py                       # data/bench_en.txt, 10K and 32K
    .venv/bin/python benchmarks/bench_merge_loop.py --vocab 10000 --repeats 3
    .venv/bin/python benchmarks/bench_merge_loop.py --counts-only         # just build the cache
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import statistics
import sys
import time
from pathlib import Path

from tinylm.io import atomic_write
from tinylm.tokenizer.train import bpe_merges, count_pretokens

SPECIAL = ["<|endoftext|>"]


def load_counts(path: Path, workers: int) -> dict[bytes, int]:
    st = path.stat()
    tag = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{SPECIAL}".encode()).hexdigest()[:16]
    cache = Path("/tmp") / f"tinylm-bench-counts-{path.stem}-{tag}.pkl"
    if cache.exists():
        with open(cache, "rb") as f:
            return pickle.load(f)
    t0 = time.perf_counter()
    counts = count_pretokens(path, SPECIAL, num_workers=workers)
    if hasattr(counts, "items_bytes"):  # SpillingCounter: as train_bpe does
        word_counts = dict(counts.items_bytes())
    else:
        word_counts = {w.encode("utf-8"): c for w, c in counts.items()}
    print(f"counted {len(word_counts):,} distinct pre-tokens in {time.perf_counter() - t0:.1f}s -> {cache}", file=sys.stderr)
    with atomic_write(cache) as f:
        pickle.dump(word_counts, f, protocol=pickle.HIGHEST_PROTOCOL)
    return word_counts


def timed(fn, repeats: int):
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return statistics.median(cpus), statistics.median(walls), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=Path("data/bench_en.txt"))
    ap.add_argument("--vocab", type=int, nargs="+", default=[10_000, 32_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="processes for the one-time pre-token count")
    ap.add_argument("--skip-python", action="store_true", help="time only the extension")
    ap.add_argument("--counts-only", action="store_true")
    args = ap.parse_args()

    word_counts = load_counts(args.input, args.workers)
    if args.counts_only:
        return 0
    try:
        from tinylm.tokenizer import _bpe_merge
    except ImportError as exc:
        print(f"extension not built ({exc}); run: .venv/bin/python setup.py build_ext --inplace", file=sys.stderr)
        return 1
    words, freqs = list(word_counts), list(word_counts.values())
    print(f"input {args.input} ({args.input.stat().st_size:,} B), {len(words):,} distinct pre-tokens, "
          f"median of {args.repeats}, special tokens {SPECIAL}")
    print(f"{'vocab':>7} {'merges':>7} | {'python cpu':>10} {'wall':>7} | {'C cpu':>7} {'wall':>7} | {'ratio cpu':>9} {'wall':>7} | same")
    for vocab in args.vocab:
        n = vocab - 256 - len(SPECIAL)
        c_cpu, c_wall, c_res = timed(lambda: _bpe_merge.merge(words, freqs, n), args.repeats)
        if args.skip_python:
            print(f"{vocab:>7} {len(c_res):>7} | {'-':>10} {'-':>7} | {c_cpu:>6.2f}s {c_wall:>6.2f}s |")
            continue
        p_cpu, p_wall, p_res = timed(lambda: bpe_merges(word_counts, n), args.repeats)
        same = p_res == c_res
        print(f"{vocab:>7} {len(c_res):>7} | {p_cpu:>9.2f}s {p_wall:>6.2f}s | {c_cpu:>6.2f}s {c_wall:>6.2f}s | "
              f"{p_cpu / c_cpu:>8.1f}x {p_wall / c_wall:>6.1f}x | {same}")
        if not same:
            first = next((i for i, (x, y) in enumerate(zip(p_res, c_res)) if x != y), min(len(p_res), len(c_res)))
            print(f"  MISMATCH at merge {first}: python {p_res[first:first + 3]} vs C {c_res[first:first + 3]}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
