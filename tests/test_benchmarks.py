"""The GPU benchmark's code path, run small on CPU so the one command left for a GPU keeps working.

No timing is asserted (speed lives in docs/BENCHMARKS.md); what is checked is the arithmetic the
reported MFU rests on: FLOPs from the accounting tool, tokens/s from the loop, the peak from the flag.
"""

import json
import subprocess
import os
import sys
from pathlib import Path

import pytest

from tinylm.model.accounting import forward_flops
from tinylm.model.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def test_bench_train_reports_tokens_per_s_and_mfu_from_accounting_flops():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--batch-size", "1", "--context-length", "64",
           "--steps", "2", "--warmup", "1", "--peak-tflops", "2", "--threads", "1", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    tinystories = ModelConfig(vocab_size=10_000, context_length=64, d_model=512, num_layers=4, num_heads=16, d_ff=1344)
    assert r["parameters"] == 22_696_448  # 2 × 10,000 × 512 embeddings/head + 4 blocks + final norm
    assert r["train_flops_per_token"] == pytest.approx(3 * forward_flops(tinystories, 64) / 64)
    assert r["mfu"] == pytest.approx(r["train_flops_per_token"] * r["loop_tokens_per_s"] / 2e12, rel=1e-2, abs=1e-4)
    assert sum(r["percent"].values()) == pytest.approx(100, abs=0.1)
    assert r["tinystories_run_minutes"] == pytest.approx(327_680_000 / r["loop_tokens_per_s"] / 60, rel=1e-2)
    assert r["peak_source"] == "--peak-tflops"


def test_bench_train_without_a_peak_on_cpu_says_mfu_is_not_available():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--batch-size", "1", "--context-length", "32",
           "--steps", "1", "--warmup", "0", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MFU n/a (n/a: pass --peak-tflops for a CPU)" in proc.stdout


def test_bench_recipe_cpu_lists_and_variants():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_recipe

    assert bench_recipe.parse_cpus("8-10,3") == [3, 8, 9, 10]
    assert bench_recipe.parse_cpus(None) == sorted(os.sched_getaffinity(0))
    variants = bench_recipe.ablation_recipes()
    assert variants["cs336+muon"]["optim.name"] == "muon" and "optim.name" not in variants["tinylm-no-muon"]
