"""metrics.jsonl in, learning-curve PNGs out (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tinylm.io import atomic_write  # noqa: E402


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """All records of a metrics.jsonl file; a line cut short by a kill is skipped, not fatal."""
    records = []
    p = Path(path)
    if not p.exists():
        return records
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def series(records: list[dict], x: str, y: str) -> tuple[list[float], list[float]]:
    pts = [(r[x], r[y]) for r in records if r.get(y) is not None and r.get(x) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(records: list[dict], out_dir: str | os.PathLike) -> list[Path]:
    """loss_vs_step.png and loss_vs_time.png (train and val loss) for one run."""
    out = []
    for x, label, name in (("step", "step", "loss_vs_step.png"), ("wall_clock", "wall-clock (s)", "loss_vs_time.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for y, style in (("train_loss", "-"), ("val_loss", "o-")):
            xs, ys = series(records, x, y)
            if xs:
                ax.plot(xs, ys, style, label=y.replace("_", " "), markersize=3)
        ax.set_xlabel(label)
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        out.append(_save(fig, Path(out_dir) / name))
    return out


def plot_comparison(runs: dict[str, list[dict]], path: str | os.PathLike, title: str, x: str = "step") -> Path:
    """Several runs' train and val curves side by side in one PNG (one line per run, log-scaled loss)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for label, records in runs.items():
        for ax, y in zip(axes, ("train_loss", "val_loss")):
            xs, ys = series(records, x, y)
            if xs:
                ax.plot(xs, ys, ".-" if y == "train_loss" else "o-", label=label, markersize=3)
    for ax, y in zip(axes, ("train loss", "val loss")):
        ax.set_title(y)
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel("nats/token (log scale)")
        ax.set_yscale("log")  # a diverging run and a converged one fit on one plot
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, Path(path))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
