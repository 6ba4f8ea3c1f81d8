"""Sweeps and ablations built on the training loop, and the toy SGD learning-rate study.

Each sweep trains one run per setting in `<out>/<label>/` (full run folders: resumable,
plotted), then writes `<out>/curves.png` (all runs side by side) and `<out>/summary.md` (a table
of final losses and each run's status). A run counts as diverged when its loss became NaN/inf
(TrainingDivergedError), when it ended above the loss it started from, or when its final loss is
not clearly below ln(vocab size), the loss of a uniform guess: at least LEARNED_MARGIN (1%) of
ln V below it (see `verdict`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from tinylm.errors import ConfigError, TrainingDivergedError
from tinylm.training import report
from tinylm.training.config import TrainConfig
from tinylm.training.loop import train
from tinylm.training.run_dir import RunDir


# A run has learned something only if its final loss is at least this share of ln V below the
# uniform guess. A run whose weights blew up often collapses to uniform logits: its loss is ln V
# to the last few digits, on one CPU a hair above and on another a hair below. A margin far larger
# than any rounding makes the verdict the same on every machine (1% of ln 257 is 0.055 nats; a
# run that learns anything at all drops by more than that within a few steps).
LEARNED_MARGIN = 0.01


@dataclass
class SweepRun:
    label: str
    out_dir: str
    status: str  # "ok" or "diverged: ..."
    steps: int
    train_loss: float | None
    val_loss: float | None
    val_bpb: float | None

    @property
    def diverged(self) -> bool:
        return self.status != "ok"


def run_sweep(base: TrainConfig, variants: dict[str, dict[str, Any]], out_dir: str | os.PathLike, title: str, x: str = "step") -> list[SweepRun]:
    """Train `base` once per variant (label -> `section.key` overrides); plot and tabulate them.

    Running the same sweep again resumes it: finished runs are kept, an interrupted one continues.
    Ctrl-C stops the whole sweep after saving the current run's checkpoint.
    """
    out = Path(out_dir)
    runs, curves = [], {}
    for label, overrides in variants.items():
        run_dir = out / _slug(label)
        config = base.with_overrides({**overrides, "train.out_dir": str(run_dir), "train.progress": False})
        status = "ok"
        try:
            result = train(config, resume=RunDir(run_dir).checkpoint.exists())
        except TrainingDivergedError as exc:
            status = "diverged: " + str(exc).split(";")[0]
        else:
            if result.interrupted:
                raise KeyboardInterrupt(f"sweep stopped during {label}; run the same command again to continue")
        records = RunDir(run_dir).read_metrics()
        run = _summarise(label, run_dir, status, records, math.log(config.model_config().vocab_size))
        curves[f"{label} (diverged)" if run.diverged else label] = records
        runs.append(run)
    report.plot_comparison(curves, out / "curves.png", title, x=x)
    (out / "summary.md").write_text(f"# {title}\n\n{summary_table(runs)}\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps([asdict(r) for r in runs], indent=1), encoding="utf-8")
    return runs


def verdict(train_losses: list[float], val_loss: float | None, uniform_loss: float) -> str:
    """"ok", or "diverged: <why>" for a finite run that learned nothing.

    Diverged when the train loss ended no lower than it started, or when the final loss (the
    validation loss when there is one, else the last train loss) is not at least LEARNED_MARGIN ×
    ln V below `uniform_loss` = ln V, the loss of a uniform guess over the vocabulary. A loss at
    ln V within rounding is "no better than uniform" on every CPU.
    """
    if not train_losses:
        return "ok"
    if len(train_losses) > 1 and not train_losses[-1] < train_losses[0]:
        return f"diverged: loss rose from {train_losses[0]:.3f} to {train_losses[-1]:.3f}"
    final = val_loss if val_loss is not None else train_losses[-1]
    if not final < uniform_loss * (1 - LEARNED_MARGIN):
        which = "validation" if val_loss is not None else "train"
        return (f"diverged: final {which} loss {final:.3f} is no better than a uniform guess "
                f"(ln V = {uniform_loss:.3f}; learning needs at least {LEARNED_MARGIN:.0%} below it)")
    return "ok"


def _summarise(label: str, run_dir: Path, status: str, records: list[dict], uniform_loss: float) -> SweepRun:
    """Final losses and the run's status (TrainingDivergedError's, else `verdict`)."""
    train_losses = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    vals = [r for r in records if r.get("val_loss") is not None]
    if status == "ok":
        status = verdict(train_losses, vals[-1]["val_loss"] if vals else None, uniform_loss)
    return SweepRun(
        label=label,
        out_dir=str(run_dir),
        status=status,
        steps=records[-1]["step"] if records else 0,
        train_loss=train_losses[-1] if train_losses else None,
        val_loss=vals[-1]["val_loss"] if vals else None,
        val_bpb=vals[-1].get("val_bpb") if vals else None,
    )


def summary_table(runs: list[SweepRun]) -> str:
    """A Markdown table of final losses, one row per run."""
    def fmt(v):
        return "–" if v is None else f"{v:.4f}"

    rows = ["| run | steps | final train loss | final val loss | val bits/byte | status |", "|---|---:|---:|---:|---:|---|"]
    rows += [f"| {r.label} | {r.steps} | {fmt(r.train_loss)} | {fmt(r.val_loss)} | {fmt(r.val_bpb)} | {r.status} |" for r in runs]
    return "\n".join(rows)


def lr_sweep(base: TrainConfig, lrs: list[float], out_dir) -> list[SweepRun]:
    """One run per peak learning rate (lr_min = lr_max / 10); include a rate large enough to diverge."""
    variants = {f"lr={lr:g}": {"optim.lr_max": lr, "optim.lr_min": min(lr / 10, lr)} for lr in lrs}
    return run_sweep(base, variants, out_dir, "learning-rate sweep")


def batch_sweep(base: TrainConfig, batch_sizes: list[int], out_dir) -> list[SweepRun]:
    """One run per batch size on the same token budget as `base`, plotted against tokens seen."""
    if base.train.max_tokens is not None:
        budget = base.train.max_tokens
    elif base.train.max_steps is not None:
        budget = base.total_steps * base.global_batch_size() * base.model_config().context_length
    else:
        raise ConfigError("a batch-size sweep compares runs on one token budget: set train.max_steps or train.max_tokens, "
                          "not train.max_minutes")
    variants = {f"batch={b}": {"train.batch_size": b, "train.max_tokens": budget} for b in batch_sizes}
    return run_sweep(base, variants, out_dir, f"batch-size sweep ({budget:,} tokens each)", x="tokens")


ABLATIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "no RMSNorm": {"model.norm": "none"},
    "post-norm": {"model.norm": "post"},
    "NoPE": {"model.position": "none"},
    "SiLU FFN": {"model.ffn": "silu", "model.d_ff": None},  # d_ff = 4·d_model: same parameter count
}


def ablation_sweep(base: TrainConfig, out_dir) -> list[SweepRun]:
    """The baseline against the four ablations of SPEC §3, same data, steps and learning rate."""
    return run_sweep(base, ABLATIONS, out_dir, "ablations")


def toy_sgd_study(lrs=(10.0, 100.0, 1000.0), steps: int = 10, seed: int = 0) -> dict[float, list[float]]:
    """SGD with lr/sqrt(t+1) on loss = mean(W²), W (10×10) initialised at 5·N(0,1).

    The gradient is W/50, so each step multiplies W by (1 - lr/(50·sqrt(t+1))): lr 10 shrinks it
    slowly, lr 100 flips its sign once and then shrinks it fast, lr 1000 multiplies it by -19 and diverges.
    """
    results = {}
    for lr in lrs:
        weight = torch.nn.Parameter(5 * torch.randn(10, 10, generator=torch.Generator().manual_seed(seed)))
        losses = []
        for t in range(steps):
            loss = (weight**2).mean()
            losses.append(loss.item())
            loss.backward()
            with torch.no_grad():
                weight -= lr / math.sqrt(t + 1) * weight.grad
            weight.grad = None
        results[lr] = losses
    return results


def format_toy_sgd(results: dict[float, list[float]]) -> str:
    lrs = list(results)
    lines = ["step " + "".join(f"{f'lr={lr:g}':>14}" for lr in lrs)]
    for t in range(len(results[lrs[0]])):
        lines.append(f"{t:>4} " + "".join(f"{results[lr][t]:>14.4g}" for lr in lrs))
    return "\n".join(lines)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "=.-" else "_" for c in label)
