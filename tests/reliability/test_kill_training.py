"""kill -9 of `tinylm train` at random moments, including in the middle of a checkpoint save (the
kill is sent the moment a `.tmp-checkpoint.pt.*` file appears): after every kill the run folder
holds a complete checkpoint (or none yet), `--resume` continues from it, and after the last resume
the model equals an uninterrupted run's bit for bit and every step is logged once (CPU, seeded).
The default run kills 3 times; `-m slow` 20 times."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tinylm import Tokenizer
from tinylm.cli import main
from tinylm.training.checkpoint import TEMP_PREFIX, read_checkpoint
from tinylm.training.config import TrainConfig, load_config, to_toml
from tinylm.training.loop import train
from tinylm.training.report import read_metrics

EOT = "<|endoftext|>"
EVERY = 3  # checkpoint every 3 steps of a tiny model: saves are frequent and fast
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the OMP_NUM_THREADS=1 subprocesses
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("killtrain")
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    tok.save_dir(d / "tok")
    np.save(d / "tokens.npy", np.array(tok.encode(("Once upon a time there was a cat. " * 30 + EOT) * 8), dtype=np.uint16))
    cfg = TrainConfig.from_dict({
        "model": dict(vocab_size=257, context_length=16, d_model=32, num_layers=1, num_heads=4, d_ff=64),
        "data": {"train": str(d / "tokens.npy")},
        "tokenizer": {"dir": str(d / "tok")},
        "optim": {"lr_max": 3e-3, "lr_min": 3e-4, "warmup_iters": 5},
        "train": {"batch_size": 4, "max_steps": 1, "eval_interval": 10_000, "log_interval": 1,
                  "checkpoint_interval": EVERY, "progress": False, "out_dir": str(d / "unused")},
    })
    (d / "cfg.toml").write_text(to_toml(cfg))
    return d / "cfg.toml"


def _uninterrupted(config_path, out, steps):
    train(load_config(config_path, {"train.max_steps": steps, "train.out_dir": str(out)}))
    return read_checkpoint(out)["model"]


def _last_step(run) -> int:
    records = read_metrics(run / "metrics.jsonl")
    return records[-1]["step"] if records else 0


def _temps(run) -> set:
    return {p.name for p in run.glob(f"{TEMP_PREFIX}checkpoint.pt.*")} if run.exists() else set()


def _kill_once(config_path, run, steps, rng) -> str:
    """Start (or resume) the run, kill -9 it at a random moment; return what the kill hit."""
    saved = read_checkpoint(run)["iteration"] if (run / "checkpoint.pt").exists() else 0
    stale = _temps(run)  # a previous kill's temporary: the resumed run deletes it, it is not a new save
    args = ["--resume", run] if (run / "config.toml").exists() else ["--config", config_path, "--out", run, "--max-steps", steps]
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "train", *map(str, args), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    mid_save = rng.random() < 0.5
    # Lines up to saved + EVERY may be left over from the killed run; past them, this run is training.
    target = saved + EVERY + (1 if mid_save else rng.randint(1, 2 * EVERY))
    deadline = time.time() + 300  # a guard against a hang, generous for a loaded machine
    while _last_step(run) < target:
        if proc.poll() is not None:
            return "finished"
        assert time.time() < deadline, "run stalled"
        time.sleep(0.002)
    if mid_save:
        while not (_temps(run) - stale) and proc.poll() is None:
            time.sleep(0.0002)
    else:
        time.sleep(rng.uniform(0, 0.02))
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert b"Traceback" not in err, err.decode()
    return "during a save" if _temps(run) - stale else "between saves"


def _kill_loop(config_path, tmp_path, steps, times, seed):
    run = tmp_path / "run"
    rng = random.Random(seed)
    last, hits = 0, []
    for _ in range(times):
        hit = _kill_once(config_path, run, steps, rng)
        if hit == "finished":
            break
        hits.append(hit)
        if (run / "checkpoint.pt").exists():
            step = read_checkpoint(run)["iteration"]  # complete and readable, whatever the kill interrupted
            assert step % EVERY == 0 and step >= last
            last = step
    res = CliRunner().invoke(main, ["train", "--resume", str(run), "--no-progress"])
    assert res.exit_code == 0 and f"trained {steps} steps" in res.output, res.output
    final = read_checkpoint(run)["model"]
    assert all(torch.equal(v, final[k]) for k, v in _uninterrupted(config_path, tmp_path / "whole", steps).items())
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, steps + 1))
    assert not _temps(run)
    return hits


def test_kill_9_three_times_then_resume_equals_an_uninterrupted_run(config_path, tmp_path, one_thread):
    hits = _kill_loop(config_path, tmp_path, steps=48, times=3, seed=0)
    assert len(hits) == 3


@pytest.mark.slow
def test_kill_9_twenty_times_then_resume_equals_an_uninterrupted_run(config_path, tmp_path, one_thread):
    hits = _kill_loop(config_path, tmp_path, steps=300, times=20, seed=1)
    assert len(hits) == 20 and "during a save" in hits, hits
    print(f"kills: {hits.count('during a save')} during a checkpoint save, {hits.count('between saves')} between saves")
