"""Tiny models and token files so every training test runs in about a second on a CPU."""

import numpy as np
import pytest

from tinylm.training.config import TrainConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every training test module runs with one torch thread (tests/conftest.py: one_torch_thread)."""


TINY_MODEL = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)


@pytest.fixture
def token_files(tmp_path):
    """A learnable token stream (a repeating pattern with noise): train.npy and val.npy."""
    rng = np.random.default_rng(0)
    pattern = np.tile(np.arange(40, dtype=np.uint16), 300)
    noise = rng.random(len(pattern)) < 0.05
    pattern[noise] = rng.integers(40, 64, noise.sum())
    train, val = tmp_path / "train.npy", tmp_path / "val.npy"
    np.save(train, pattern)
    np.save(val, pattern[:2000])
    return train, val


@pytest.fixture
def make_config(tmp_path, token_files):
    """make_config(**{'section.key': value}) -> a validated TrainConfig for a few-step tiny run."""

    def make(**overrides):
        train, val = token_files
        base = {
            "model": dict(TINY_MODEL),
            "data": {"train": str(train), "val": str(val)},
            "optim": {"lr_max": 3e-3, "lr_min": 3e-4, "warmup_iters": 2},
            "train": {
                "batch_size": 4,
                "max_steps": 8,
                "eval_interval": 4,
                "eval_batches": 2,
                "log_interval": 1,
                "out_dir": str(tmp_path / "run"),
                "progress": False,
            },
        }
        return TrainConfig.from_dict(base).with_overrides({k.replace("__", "."): v for k, v in overrides.items()})

    return make
