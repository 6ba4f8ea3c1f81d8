"""benchmarks/bench_generate.py runs, compares equal tokens and reports its figures consistently
(no timing asserted: speed lives in docs/BENCHMARKS.md)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_generate_reports_tokens_per_s_with_and_without_the_cache():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_generate.py"), "--contexts", "24,32", "--new-tokens", "4",
           "--batch-size", "2", "--repeats", "1", "--json",
           "--set", "vocab_size=300", "--set", "d_model=32", "--set", "num_heads=4", "--set", "d_ff=64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["context"] for r in report["results"]] == [24, 32]
    for r in report["results"]:
        assert r["same_tokens"] and r["prompt_tokens"] == r["context"] - 4
        for name in ("cache", "no cache"):
            assert r[name]["tokens_per_s"] == pytest.approx(4 * 2 / r[name]["wall_s"])
        assert r["speedup"] == pytest.approx(r["no cache"]["wall_s"] / r["cache"]["wall_s"])
    assert "| 32 | 28 + 4 |" in proc.stdout and "vocab_size=300, d_model=32" in proc.stdout
