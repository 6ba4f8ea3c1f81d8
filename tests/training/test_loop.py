"""The training loop: outputs, exact resume, divergence, interruption, config handling."""

import json
import math
import os
import signal
import sys
import types

import numpy as np
import pytest
import torch

from tinylm.errors import CheckpointError, ConfigError, DataError, InputFileError, TrainingDivergedError
from tinylm.training import loop as loop_mod
from tinylm.training.checkpoint import read_checkpoint
from tinylm.training.config import TrainConfig, load_config, to_toml
from tinylm.training.loop import train


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_metrics_plots_checkpoint_and_config(make_config):
    config = make_config()
    result = train(config)
    run = result.out_dir
    assert not result.interrupted and result.step == 8
    assert {"checkpoint.pt", "metrics.jsonl", "config.toml", "loss_vs_step.png", "loss_vs_time.png"} <= set(os.listdir(run))
    for png in ("loss_vs_step.png", "loss_vs_time.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = _records(run)
    assert [r["step"] for r in records] == list(range(1, 9))
    for key in ("tokens", "wall_clock", "train_loss", "lr", "grad_norm", "tokens_per_s"):
        assert all(key in r for r in records)
    assert records[-1]["tokens"] == 8 * 4 * 16
    evals = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in evals] == [4, 8]  # every eval_interval and at the end
    # steps are numbered from 1: the first warm-up step trains (lr_max / warmup_iters, never 0), the last
    # warm-up step (2) reaches lr_max, the last step reaches lr_min (issue 16: step 1 used to run at lr 0)
    assert records[0]["lr"] == pytest.approx(3e-3 / 2) and records[1]["lr"] == pytest.approx(3e-3)
    assert records[-1]["lr"] == pytest.approx(3e-4)
    assert read_checkpoint(run)["iteration"] == 8
    saved = load_config(run / "config.toml")
    assert saved.model == config.model and saved.train.max_steps == 8
    assert os.path.isabs(saved.data.train)  # the run folder works from any directory


def test_loss_goes_down_on_learnable_data(make_config):
    result = train(make_config(**{"train.max_steps": 40, "train.eval_interval": 40, "train.log_interval": 5}))
    records = _records(result.out_dir)
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 1.0
    assert result.val_loss < math.log(64)


def _stop_at(k):
    return lambda step, record: step == k


def test_resume_is_bit_exact(make_config, tmp_path):
    n, k = 10, 4
    full = train(make_config(**{"train.max_steps": n, "train.out_dir": str(tmp_path / "full")}))
    cfg = make_config(**{"train.max_steps": n, "train.out_dir": str(tmp_path / "split")})
    first = train(cfg, on_step=_stop_at(k))
    assert first.interrupted and first.step == k
    assert read_checkpoint(first.out_dir)["iteration"] == k
    second = train(cfg, resume=True)
    assert second.step == n and not second.interrupted

    a = read_checkpoint(full.out_dir)
    b = read_checkpoint(second.out_dir)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][i]["exp_avg"])

    def losses(run):
        return [(r["step"], r["train_loss"], r["grad_norm"], r.get("val_loss")) for r in _records(run)]

    assert losses(second.out_dir) == losses(full.out_dir)  # same loss at every step, logged once


def test_resume_truncates_metrics_written_after_the_checkpoint(make_config):
    cfg = make_config(**{"train.max_steps": 6, "train.checkpoint_interval": 2})
    first = train(cfg, on_step=_stop_at(3))  # saves at 2 and at the stop (3)
    with open(first.out_dir / "metrics.jsonl", "a") as f:  # as if killed after logging step 4, 5
        f.write(json.dumps({"step": 4}) + "\n" + json.dumps({"step": 5}) + "\n{\"step\": 6, \"trun")
    train(cfg, resume=True)
    assert [r["step"] for r in _records(first.out_dir)] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_finishes_the_step_saves_and_returns(make_config):
    def press_ctrl_c(step, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    result = train(make_config(), on_step=press_ctrl_c)
    assert result.interrupted and result.step == 3
    assert read_checkpoint(result.out_dir)["iteration"] == 3
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored


def test_second_sigint_stops_at_once_except_a_launchers_forwarded_copy(monkeypatch):
    """One process: a second Ctrl-C raises KeyboardInterrupt. Under a launcher, a copy of the first
    one forwarded within the window is the same keypress; a later one stops at once."""
    clock = {"now": 100.0}
    monkeypatch.setattr(loop_mod.time, "monotonic", lambda: clock["now"])
    single = loop_mod._StopRequest()
    single(signal.SIGINT, None)
    assert single.requested
    with pytest.raises(KeyboardInterrupt):
        single(signal.SIGINT, None)

    launched = loop_mod._StopRequest(repeat_window=2.0)
    launched(signal.SIGINT, None)
    clock["now"] += 0.05
    launched(signal.SIGINT, None)  # the forwarded copy: still just "stop after this step"
    launched(signal.SIGTERM, None)  # so is SIGTERM, at any time
    clock["now"] += 2.1
    with pytest.raises(KeyboardInterrupt):
        launched(signal.SIGINT, None)  # a real second Ctrl-C

    hooked = loop_mod._StopRequest()
    hooked.requested = True  # the on_step hook asked to stop (e.g. the quick start's time budget)
    hooked(signal.SIGINT, None)  # a Ctrl-C after that is a first Ctrl-C, not ignored ...
    with pytest.raises(KeyboardInterrupt):
        hooked(signal.SIGINT, None)  # ... and a second one stops at once


def test_nan_loss_saves_last_good_state_and_stops(make_config, monkeypatch):
    calls = {"n": 0}
    real = loop_mod.cross_entropy

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(loop_mod, "cross_entropy", poisoned)
    config = make_config(**{"train.eval_interval": 100})
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 6 .*last good state \(step 5\)"):
        train(config)
    payload = read_checkpoint(config.train.out_dir)
    assert payload["iteration"] == 5
    assert all(torch.isfinite(v).all() for v in payload["model"].values())
    monkeypatch.setattr(loop_mod, "cross_entropy", real)
    resumed = train(config, resume=True)  # the saved state continues cleanly
    assert resumed.step == 8


def test_existing_run_needs_resume_and_resume_needs_a_run(make_config):
    config = make_config(**{"train.max_steps": 2})
    train(config)
    with pytest.raises(ConfigError, match="--resume"):
        train(config)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(config.with_overrides({"train.out_dir": config.train.out_dir + "-new"}), resume=True)


def test_resume_before_the_first_checkpoint_starts_the_run(make_config):
    config = make_config(**{"train.max_steps": 3})
    first = train(config)
    reference = read_checkpoint(first.out_dir)["model"]
    (first.out_dir / "checkpoint.pt").unlink()  # as if killed before any save
    again = train(config, resume=True)
    assert again.step == 3 and [r["step"] for r in _records(first.out_dir)] == [1, 2, 3]
    assert all(torch.equal(v, read_checkpoint(again.out_dir)["model"][k]) for k, v in reference.items())


def test_data_file_smaller_than_one_batch(make_config, tmp_path):
    np.save(tmp_path / "small.npy", np.arange(10, dtype=np.uint16))
    with pytest.raises(DataError, match="has 10 tokens"):
        train(make_config(**{"data.train": str(tmp_path / "small.npy")}))
    with pytest.raises(InputFileError):
        train(make_config(**{"data.val": str(tmp_path / "nope.npy")}))


@pytest.fixture
def byte_text(tmp_path):
    """A byte-level tokenizer (GPT-2 file pair) and text with multi-byte characters."""
    from tinylm import Tokenizer

    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    text = "héllo wörld, " * 300
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    return tok, text


def test_val_bits_per_byte_counted_with_the_tokenizer(make_config, tmp_path, byte_text):
    tok, text = byte_text
    ids = np.array(tok.encode(text), dtype=np.uint16)
    np.save(tmp_path / "v.npy", ids)
    config = make_config(**{
        "model.vocab_size": 257, "data.train": str(tmp_path / "v.npy"), "data.val": str(tmp_path / "v.npy"),
        "tokenizer.vocab": str(tmp_path / "vocab.json"), "tokenizer.merges": str(tmp_path / "merges.txt"),
        "train.max_steps": 2, "train.eval_interval": 2,
    })
    result = train(config)
    bytes_per_token = len(text.encode()) / len(ids)
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2) / bytes_per_token)
    assert {"vocab.json", "merges.txt", "special_tokens.json"} <= set(os.listdir(result.out_dir))
    given = train(config.with_overrides({"data.val_bytes_per_token": 2.0, "train.out_dir": str(tmp_path / "r2")}))
    assert given.val_bpb == pytest.approx(given.val_loss / math.log(2) / 2.0)


def test_val_bits_per_byte_from_the_encode_sidecar(make_config, tmp_path, byte_text):
    from tinylm.tokenizer.token_arrays import encode_file

    tok, text = byte_text
    info = encode_file(tok, tmp_path / "text.txt", tmp_path / "v.bin", num_workers=1)
    assert (tmp_path / "v.bin.json").exists()
    config = make_config(**{
        "model.vocab_size": 257, "data.train": str(tmp_path / "v.bin"), "data.val": str(tmp_path / "v.bin"),
        "train.max_steps": 2, "train.eval_interval": 2,
    })  # no tokenizer configured: only the sidecar knows the bytes
    result = train(config)
    assert result.val_bpb == pytest.approx(result.val_loss / math.log(2) / (len(text.encode()) / info.num_tokens))


def test_tokenizer_larger_than_the_model_is_refused(make_config, tmp_path, byte_text):
    with pytest.raises(ConfigError, match="257 tokens but model.vocab_size is 64"):
        train(make_config(**{"tokenizer.vocab": str(tmp_path / "vocab.json"), "tokenizer.merges": str(tmp_path / "merges.txt")}))


def test_wandb_logging_when_asked(make_config, monkeypatch):
    calls = []
    fake_run = types.SimpleNamespace(log=lambda rec, step: calls.append(("log", step)), finish=lambda: calls.append(("finish",)))
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw["mode"])) or fake_run)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train(make_config(**{"train.max_steps": 2, "train.wandb": True}))
    assert calls == [("init", "offline"), ("log", 1), ("log", 2), ("finish",)]


def test_wandb_missing_is_a_clear_error(make_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    with pytest.raises(ConfigError, match="wandb is not installed"):
        train(make_config(**{"train.max_steps": 2, "train.wandb": True}))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.batch_size": 0}, "train.batch_size must be at least 1"),
        ({"optim.lr_min": 1.0}, "larger than optim.lr_max"),
        ({"train.max_tokens": 100, "train.max_steps": 5}, "exactly one of"),
        ({"optim.beta2": 1.0}, "beta2"),
        ({"train.batch_size": "big"}, "train.batch_size must be int"),
        ({"model.d_model": 30}, "divisible"),
        ({"model.depth": 3}, "unknown model config key"),
        ({"optim.momentum": 0.9}, r"unknown key\(s\) in \[optim\]"),
        ({"train.device": "tpu"}, "train.device"),
    ],
)
def test_bad_settings_are_config_errors(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config = make_config()
        data = config.to_dict()
        for key, value in overrides.items():
            section, name = key.split(".")
            data[section][name] = value
        TrainConfig.from_dict(data)


def test_toml_round_trip_and_flag_overrides(make_config, tmp_path):
    config = make_config()
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config
    changed = load_config(path, ["optim.lr_max=1e-2", "train.max_tokens=6400", "model.norm=post"])
    assert changed.optim.lr_max == 0.01 and changed.model.norm == "post"
    assert changed.train.max_steps is None and changed.total_steps == 100  # 6400 / (4 × 16)
    with pytest.raises(ConfigError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("[train\n")
        load_config(tmp_path / "bad.toml")
