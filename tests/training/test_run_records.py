"""A run records exactly what it did (issue 16): the learning rate of every step, the optimizer
settings after a resume, tokens seen across resumes with any batch, and one validation set for every
batch size.

`Recording` is the real Trainer with its optimizer step and batch draw observed: what each step
actually used is compared with what metrics.jsonl, config.toml and the checkpoint say.
"""

import json
import math
import tomllib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.errors import ConfigError
from tinylm.training.checkpoint import read_checkpoint
from tinylm.experiments import batch_sweep
from tinylm.training.config import TrainConfig, load_config, to_toml
from tinylm.training.batches import eval_starts
from tinylm.training.loop import Trainer
from tinylm.training.optim import budget_lr, cosine_lr

CTX = 16  # TINY_MODEL's context length (conftest)


class Recording(Trainer):
    """The Trainer, noting for each optimizer step the settings it ran with and the sequences it saw."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.used: list[dict] = []
        self._sequences = 0

    def draw_batch(self):
        batches = super().draw_batch()
        self._sequences = sum(inputs.shape[0] for inputs, _ in batches) * self.dist.world_size
        return batches

    def optimizer_step(self):
        groups = self.optimizer.param_groups
        self.used.append({
            "step": self.step + 1,
            "lr": groups[0]["lr"],
            "betas": tuple(groups[0]["betas"]),
            "eps": groups[0]["eps"],
            "weight_decay": sorted(g["weight_decay"] for g in groups),
            "tokens": self._sequences * CTX,
        })
        super().optimizer_step()


def _run(config: TrainConfig, resume=False, stop_at=None, clock=None) -> Recording:
    kwargs = {"clock": clock} if clock is not None else {}
    trainer = Recording(config, resume=resume, on_step=(lambda step, record: step == stop_at) if stop_at else None, **kwargs)
    trainer.result = trainer.run()
    return trainer


def _records(trainer: Trainer) -> list[dict]:
    return [json.loads(line) for line in (trainer.out / "metrics.jsonl").read_text().splitlines()]


def _saved_optim(trainer: Trainer) -> dict:
    return tomllib.loads((trainer.out / "config.toml").read_text())["optim"]


# --- 1. the learning rate of every step -------------------------------------------------------------------------
def test_every_step_trains_and_the_schedule_peaks_at_the_end_of_warm_up(make_config):
    config = make_config(**{"train.max_steps": 30, "optim.warmup_iters": 10, "optim.lr_max": 1e-3, "optim.lr_min": 1e-4,
                            "train.eval_interval": 100})
    trainer = _run(config)
    lrs = {u["step"]: u["lr"] for u in trainer.used}
    assert lrs[1] == pytest.approx(1e-3 / 10) and lrs[1] > 0  # the first warm-up step trains (it ran at lr 0)
    assert lrs[10] == pytest.approx(1e-3)  # lr_max at the end of warm-up, not one step late
    assert lrs[30] == pytest.approx(1e-4)  # the last step at lr_min
    assert all(lrs[s] == cosine_lr(s, 1e-3, 1e-4, 10, 30) for s in lrs)  # the course's formula at the step number
    assert {r["step"]: r["lr"] for r in _records(trainer)} == lrs  # metrics.jsonl logs the rate each step used


def test_a_wall_clock_budget_ends_the_run_and_drives_the_cosine(make_config):
    """max_minutes with a fake clock that advances one second per step: exactly 12 steps fit in 0.2 minutes."""
    config = make_config(**{"train.max_steps": None, "train.max_minutes": 0.2, "optim.warmup_iters": 3,
                            "train.eval_interval": 5, "train.checkpoint_interval": 5})
    box = {}  # the clock reads the trainer's own step count: one second per step
    trainer = Recording(config, clock=lambda: float(getattr(box.get("trainer"), "step", 0)))
    box["trainer"] = trainer
    trainer.run()
    assert [u["step"] for u in trainer.used] == list(range(1, 13))
    for u in trainer.used:  # step s starts at s - 1 seconds of the 12-second budget; warm-up ends at step 3 (2 s)
        assert u["lr"] == budget_lr(u["step"], (u["step"] - 1) / 12, 3e-3, 3e-4, 3, 2 / 12) and u["lr"] > 0
    assert trainer.used[0]["lr"] == pytest.approx(1e-3) and trainer.used[2]["lr"] == pytest.approx(3e-3)  # lr_max at step 3
    # then the cosine over the remaining 10 seconds: step 8 starts halfway through it
    assert trainer.used[7]["lr"] == pytest.approx(3e-4 + 0.5 * (1 + math.cos(math.pi * 0.5)) * 2.7e-3)
    records = _records(trainer)
    assert records[-1]["step"] == 12 and "val_loss" in records[-1]  # the last step is evaluated


# --- 2. optimizer settings changed on resume ----------------------------------------------------------------
def test_optimizer_settings_changed_on_resume_are_used(make_config, tmp_path):
    base = make_config(**{"train.max_steps": 8, "train.out_dir": str(tmp_path / "a")})
    _run(base, stop_at=4)
    plain = make_config(**{"train.max_steps": 8, "train.out_dir": str(tmp_path / "b")})
    _run(plain, stop_at=4)
    changed = base.with_overrides({"optim.weight_decay": 0.5, "optim.beta2": 0.5, "optim.eps": 1e-3})
    resumed = _run(changed, resume=True)
    assert {(u["betas"], u["eps"], tuple(u["weight_decay"])) for u in resumed.used} == {((0.9, 0.5), 1e-3, (0.0, 0.5))}
    saved = _saved_optim(resumed)
    assert (saved["beta2"], saved["eps"], saved["weight_decay"]) == (0.5, 1e-3, 0.5)
    unchanged = _run(plain, resume=True)
    a, b = read_checkpoint(resumed.out)["model"], read_checkpoint(unchanged.out)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the new settings changed the training (they used not to)


def test_a_changed_seed_on_resume_is_refused(make_config):
    config = make_config(**{"train.max_steps": 6})
    _run(config, stop_at=2)
    with pytest.raises(ConfigError, match="train.seed"):
        Trainer(config.with_overrides({"train.seed": 7}), resume=True)


# --- 3. tokens seen across resumes -----------------------------------------------------------------------------
def test_tokens_are_cumulative_when_a_resume_changes_the_batch(make_config):
    """The issue's input: a 1,024-token budget at batch 4 × 16 tokens, stopped at 256 tokens, resumed at batch 8."""
    config = make_config(**{"train.max_steps": None, "train.max_tokens": 1024, "train.batch_size": 4})
    first = _run(config, stop_at=4)
    assert first.tokens_seen == 256
    second = _run(config.with_overrides({"train.batch_size": 8}), resume=True)
    records = _records(second)
    assert [r["tokens"] for r in records] == [64, 128, 192, 256, 384, 512, 640, 768, 896, 1024]
    assert second.step == 10 and sum(u["tokens"] for u in first.used + second.used) == 1024
    assert read_checkpoint(second.out)["progress"]["tokens"] == 1024


# --- 4. one validation set for every batch size -------------------------------------------------------------
def test_validation_windows_do_not_depend_on_the_batch_size(make_config, tmp_path):
    """Batch 8 and batch 2 × 4 accumulation train to the same weights: they must report the same validation loss."""
    big = _run(make_config(**{"train.batch_size": 8, "train.out_dir": str(tmp_path / "big")}))
    acc = _run(make_config(**{"train.batch_size": 2, "train.grad_accum_steps": 4, "train.out_dir": str(tmp_path / "acc")}))
    a, b = read_checkpoint(big.out)["model"], read_checkpoint(acc.out)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
    val_a = [r["val_loss"] for r in _records(big) if "val_loss" in r]
    val_b = [r["val_loss"] for r in _records(acc) if "val_loss" in r]
    assert val_a == pytest.approx(val_b, abs=1e-4)  # was 3.66 vs 3.51: 16 windows vs 4


def test_old_configs_eval_batches_keep_their_windows(make_config, tmp_path):
    data = make_config().to_dict()
    data["train"].pop("eval_windows")
    data["train"].update(eval_batches=3, batch_size=4)
    assert TrainConfig.from_dict(data).train.eval_windows == 12  # eval_batches × batch_size, as before
    assert len(eval_starts(10_000, CTX, 12)) == 12
    # an old run's config.toml resumed with another batch size keeps the windows it was evaluated on
    old = tmp_path / "config.toml"
    old.write_text(to_toml(TrainConfig.from_dict(data)).replace("eval_windows = 12", "eval_batches = 3"))
    assert "eval_batches = 3" in old.read_text()
    assert load_config(old, {"train.batch_size": 8}).train.eval_windows == 12
    for bad in ("abc", 0, 2.5, True):
        with pytest.raises(ConfigError, match="train.eval_batches"):
            load_config(old, {"train.eval_batches": bad})


def test_settings_a_run_could_not_honour_are_refused(make_config, tmp_path):
    with pytest.raises(ConfigError, match="cosine_iters"):
        make_config(**{"train.max_steps": None, "train.max_minutes": 1.0, "optim.cosine_iters": 10})
    timed = make_config(**{"train.max_steps": None, "train.max_minutes": 1.0})
    with pytest.raises(ConfigError, match="token budget"):
        batch_sweep(timed, [2, 4], tmp_path / "sweep")
    assert TrainConfig(model={"vocab_size": 64, "d_model": 32, "num_heads": 4}).model.d_model == 32  # a table works too


# --- the whole kind: stopped at a random step, resumed with other settings -------------------------------------
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stop=st.integers(1, 5),
    budget=st.sampled_from(["steps", "tokens"]),
    batch=st.sampled_from([2, 4, 8]),
    accum=st.sampled_from([1, 2]),
    optim=st.fixed_dictionaries({"optim.beta2": st.sampled_from([0.95, 0.5]), "optim.weight_decay": st.sampled_from([0.1, 0.0, 0.4]),
                                 "optim.eps": st.sampled_from([1e-8, 1e-4]), "optim.lr_max": st.sampled_from([3e-3, 1e-2])}),
)
def test_a_resumed_run_records_what_it_did(make_config, tmp_path_factory, stop, budget, batch, accum, optim):
    out = tmp_path_factory.mktemp("resumed") / "run"
    limit = {"train.max_steps": 8} if budget == "steps" else {"train.max_steps": None, "train.max_tokens": 8 * 4 * CTX}
    config = make_config(**{**limit, "train.out_dir": str(out), "train.log_interval": 1})
    first = _run(config, stop_at=stop)
    changed = config.with_overrides({"train.batch_size": batch, "train.grad_accum_steps": accum, **optim})
    second = _run(changed, resume=True)
    used = first.used + second.used
    records = _records(second)
    # every step logged once, with the learning rate it used and the tokens seen up to and including it
    assert [r["step"] for r in records] == [u["step"] for u in used] == list(range(1, len(used) + 1))
    running = 0
    for record, u in zip(records, used):
        running += u["tokens"]
        assert record["tokens"] == running and record["lr"] == u["lr"] and u["lr"] > 0
    assert read_checkpoint(second.out)["progress"]["tokens"] == running == second.tokens_seen
    # the steps after the resume used what config.toml claims
    saved = _saved_optim(second)
    for u in second.used:
        assert u["betas"] == (saved["beta1"], saved["beta2"]) and u["eps"] == saved["eps"]
        assert u["weight_decay"] == sorted([0.0, saved["weight_decay"]])
    # a token budget ends at the first step that reaches it, whatever the batch did
    if budget == "tokens":
        assert running >= changed.train.max_tokens > running - used[-1]["tokens"]
    else:
        assert len(used) == 8
