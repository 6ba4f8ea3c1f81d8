"""train_bpe of this checkout against another source tree (an older revision), in alternating runs.

For reviews of refactors that must not change speed. Each run is a fresh subprocess (the other
tree put first on PYTHONPATH for its runs, its C helpers copied in beside it), the two trees take
turns so background load hits both, and each run reports the CPU seconds of its process for the
whole train_bpe call and for the merge stage (run_merges): CPU time, not wall time, because this
machine is shared. Prints every run, the medians and the median of the paired ratios (this/other).

    git archive d04e51f | tar -x -C /tmp/old && cp tinylm/tokenizer/*.so /tmp/old/tinylm/tokenizer/
    .venv/bin/python benchmarks/ab_train_bpe.py /tmp/old --input data/bench_en_10MB.txt --vocab 10000 --pairs 5
    .venv/bin/python benchmarks/ab_train_bpe.py /tmp/old --input data/bench_en_10MB.txt --vocab 3000 --merge-backend python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
import tinylm.tokenizer.train as train
merge_cpu = []
run_merges = train.run_merges
def timed(*args, **kwargs):
    c0 = time.process_time()
    try:
        return run_merges(*args, **kwargs)
    finally:
        merge_cpu.append(time.process_time() - c0)
train.run_merges = timed  # train_bpe reaches it through the module, in old and new trees alike
path, vocab, backend, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
c0 = time.process_time()
train.train_bpe(path, vocab, ["<|endoftext|>"], num_workers=workers, merge_backend=backend)
print(json.dumps({"tree": train.__file__, "train_cpu": time.process_time() - c0, "merge_cpu": merge_cpu[0]}))
"""


ROOT = Path(__file__).resolve().parent.parent


def run(tree: Path | None, args) -> dict:
    """One child on this checkout (tree None) or on `tree`; `python -c` puts its working folder first on sys.path."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-c", CHILD, str(args.input.resolve()), str(args.vocab), args.merge_backend, str(args.workers)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree or ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", type=Path, help="source tree of the other revision (holding tinylm/)")
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--vocab", type=int, default=10_000)
    ap.add_argument("--merge-backend", default="auto")
    ap.add_argument("--workers", type=int, default=1, help="counting processes (1: all CPU time is this process's)")
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    print(f"input {args.input} ({args.input.stat().st_size / 1e6:.1f} MB), vocab {args.vocab}, merge backend {args.merge_backend}, "
          f"workers {args.workers}; load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    this, other = [], []
    for i in range(args.pairs):
        this.append(run(None, args))
        other.append(run(args.other, args))
        print(f"  pair {i + 1}: this train {this[-1]['train_cpu']:.3f} s CPU (merge {this[-1]['merge_cpu']:.3f}), "
              f"other train {other[-1]['train_cpu']:.3f} (merge {other[-1]['merge_cpu']:.3f})")
    other_root = str(args.other.resolve())
    assert all(r["tree"].startswith(other_root) for r in other) and all(r["tree"].startswith(str(ROOT)) for r in this), "a run imported the wrong tree"
    for key in ("train_cpu", "merge_cpu"):
        a, b = [r[key] for r in this], [r[key] for r in other]
        ratio = statistics.median(x / y for x, y in zip(a, b))
        print(f"{key}: median this {statistics.median(a):.3f} s, other {statistics.median(b):.3f} s, median paired ratio this/other {ratio:.3f}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
