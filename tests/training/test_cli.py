"""`tinylm train`, `generate` and `sweep` end to end on tiny synthetic data (Ctrl-C and kill -9 of
`tinylm train`: tests/reliability/)."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tinylm import Tokenizer
from tinylm.cli import main
from tinylm.training.config import to_toml

EOT = "<|endoftext|>"


@pytest.fixture
def byte_run(tmp_path, make_config):
    """A config file for a byte-level tokenizer folder (257 ids) and a raw .bin token file."""
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    tok.save_dir(tmp_path / "tok")
    text = ("Once upon a time there was a cat. " * 40 + EOT) * 8
    ids = np.array(tok.encode(text), dtype=np.uint16)
    ids.tofile(tmp_path / "tokens.bin")
    config = make_config(**{
        "model.vocab_size": 257, "data.train": str(tmp_path / "tokens.bin"), "data.val": str(tmp_path / "tokens.bin"),
        "tokenizer.dir": str(tmp_path / "tok"),
    })
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config))
    return path


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_then_generate(byte_run, tmp_path):
    run = tmp_path / "cli-run"
    res = _invoke("train", "--config", byte_run, "--out", run, "--max-steps", 6, "--lr", 5e-3, "--no-progress")
    assert res.exit_code == 0, res.output
    assert "trained 6 steps" in res.output and "bits/byte" in res.output
    expected = {"checkpoint.pt", "metrics.jsonl", "loss_vs_step.png", "loss_vs_time.png", "config.toml"}
    assert expected | {"vocab.json", "merges.txt", "special_tokens.json"} <= set(os.listdir(run))
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6

    args = ("generate", "--checkpoint", run, "--prompt", "Once", "--max-new-tokens", 8, "--temperature", 0)
    first, second = _invoke(*args), _invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output and first.output.startswith("Once")
    sampled = _invoke("generate", "--checkpoint", run / "checkpoint.pt", "--prompt", "Once", "--top-p", 0.9, "--seed", 1)
    assert sampled.exit_code == 0

    forged = _invoke("generate", "--checkpoint", run, "--prompt", f"a{EOT}b")
    assert forged.exit_code == 2 and "error: text contains the special token" in forged.output

    again = _invoke("train", "--config", byte_run, "--out", run, "--no-progress")
    assert again.exit_code == 2 and "--resume" in again.output
    more = _invoke("train", "--resume", run, "--max-steps", 8, "--no-progress")
    assert more.exit_code == 0 and "trained 8 steps" in more.output, more.output


def test_bad_input_is_one_error_line(byte_run, tmp_path):
    res = _invoke("train", "--config", byte_run, "--set", "model.d_model=30", "--out", tmp_path / "x")
    assert res.exit_code == 2 and res.output.startswith("error: model config: d_model (30)")
    res = _invoke("train", "--config", tmp_path / "missing.toml")
    assert res.exit_code == 2 and "config file not found" in res.output
    res = _invoke("generate", "--checkpoint", tmp_path, "--prompt", "x")
    assert res.exit_code == 2 and "no checkpoint" in res.output


def test_sweep_lr_reports_the_divergent_rate(byte_run, tmp_path):
    out = tmp_path / "lr"
    res = _invoke("sweep", "lr", "--config", byte_run, "--lrs", "3e-3,1e3", "--out", out, "--set", "train.max_steps=6")
    assert res.exit_code == 0, res.output
    assert "lr=1000: diverged" in res.output
    results = {r["label"]: r for r in json.loads((out / "results.json").read_text())}
    assert results["lr=0.003"]["status"] == "ok" and results["lr=1000"]["status"].startswith("diverged")
    assert (out / "curves.png").exists() and "| lr=0.003 |" in (out / "summary.md").read_text()
    again = _invoke("sweep", "lr", "--config", byte_run, "--lrs", "3e-3,1e3", "--out", out, "--set", "train.max_steps=6")
    assert again.exit_code == 0, again.output  # a second run resumes: finished runs are kept
    assert {r["label"]: r for r in json.loads((out / "results.json").read_text())} == results


def test_sweep_batch_and_ablations(byte_run, tmp_path):
    res = _invoke("sweep", "batch", "--config", byte_run, "--sizes", "2,4", "--out", tmp_path / "b", "--set", "train.max_steps=4")
    assert res.exit_code == 0, res.output
    runs = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [r["steps"] for r in runs] == [8, 4]  # same token budget
    res = _invoke("sweep", "ablations", "--config", byte_run, "--out", tmp_path / "a", "--set", "train.max_steps=2")
    assert res.exit_code == 0, res.output
    labels = [r["label"] for r in json.loads((tmp_path / "a" / "results.json").read_text())]
    assert labels == ["baseline", "no RMSNorm", "post-norm", "NoPE", "SiLU FFN"]
    assert (tmp_path / "a" / "curves.png").exists()


def test_toy_sgd_command_prints_losses():
    res = _invoke("sweep", "toy-sgd")
    assert res.exit_code == 0
    lines = res.output.strip().splitlines()
    assert lines[0].split() == ["step", "lr=10", "lr=100", "lr=1000"] and len(lines) == 11
