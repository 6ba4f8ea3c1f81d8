"""The run folder's one owner: its layout, and saving and loading what a run is (model, tokenizer, config).

A run folder, as `tinylm train` writes it (nanochat's checkpoint_manager plays this part there):

    config.toml         the resolved TrainConfig (`tinylm train --config` repeats the run)
    checkpoint.pt       latest state, written atomically (training.checkpoint)
    metrics.jsonl       one JSON record per log step
    loss_vs_step.png    learning curves (training.report)
    loss_vs_time.png
    vocab.json, merges.txt, special_tokens.json
                        the run's tokenizer: a run folder is also a tokenizer folder

Only this module spells those names (the plots' names belong to training.report, which draws them);
the trainer, the quick start, sweeps and generation ask it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from tinylm.errors import CheckpointError, ConfigError, InputFileError
from tinylm.io import atomic_write_bytes, ensure_output_dir, remove_stale_temps_in
from tinylm.tokenizer.files import VOCAB_FILE

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.toml"


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder and the operations on it (nothing is created until asked)."""

    path: Path

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", Path(path))

    @classmethod
    def containing(cls, path: str | os.PathLike) -> RunDir:
        """The run folder itself, or the folder of a checkpoint file inside one."""
        p = Path(path)
        return cls(p if p.is_dir() else p.parent)

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    def has_tokenizer(self) -> bool:
        return (self.path / VOCAB_FILE).exists()

    def prepare(self) -> None:
        """Create the folder (or check it is writable) and delete temporaries a killed save left behind."""
        ensure_output_dir(self.path)
        remove_stale_temps_in(self.path)

    def write_config(self, config) -> None:
        """config.toml, atomically (a TrainConfig)."""
        from tinylm.training.config import to_toml

        atomic_write_bytes(self.config, to_toml(config).encode("utf-8"))

    def read_metrics(self) -> list[dict]:
        from tinylm.training.report import read_metrics

        return read_metrics(self.metrics)

    def keep_metrics_through(self, step: int) -> None:
        """Drop records after `step` (logged by a run killed after its last checkpoint): each step once."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))

    def plot(self) -> None:
        """loss_vs_step.png and loss_vs_time.png from metrics.jsonl."""
        from tinylm.training.report import plot_run

        plot_run(self.read_metrics(), self.path)

    def save_tokenizer(self, tokenizer) -> None:
        """The run's tokenizer, once (a resumed run keeps the copy it started with)."""
        if not self.has_tokenizer():
            tokenizer.save_dir(self.path)

    def load_tokenizer(self):
        """The Tokenizer saved in the folder, or None."""
        if not self.has_tokenizer():
            return None
        from tinylm.tokenizer.bpe import Tokenizer

        return Tokenizer.from_dir(self.path)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model, tokenizer, payload) of a trained run: a run folder or a checkpoint file inside one.

    The model is rebuilt from the checkpoint's model config and moved to `device`; the tokenizer is
    the folder's copy (`tinylm train` saves it there), else the one the run's config names.
    Raises CheckpointError for a missing or unreadable checkpoint, InputFileError without a tokenizer,
    ConfigError when the tokenizer has ids the model lacks.
    """
    from tinylm.training.checkpoint import load_model
    from tinylm.training.config import TokenizerConfig

    p = Path(path)
    run = RunDir.containing(p)
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {p}")
    model, payload = load_model(p, device)
    tokenizer = run.load_tokenizer()
    if tokenizer is None:
        tokenizer = TokenizerConfig(**(payload.get("train_config") or {}).get("tokenizer", {})).load()
    if tokenizer is None:
        raise InputFileError(f"no tokenizer for {path}: expected vocab.json and merges.txt in {run.path}")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(f"the tokenizer in {run.path} has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    return model, tokenizer, payload
