"""Checkpoints that survive a kill mid-save and never run code when loaded.

A checkpoint is one `torch.save` file holding only tensors and plain Python values, so
`torch.load(weights_only=True)` reads it: loading a checkpoint from someone else cannot execute
code. It is streamed through tinylm.io.atomic_write (a temporary `.tmp-checkpoint.pt.*` in the same
folder, fsynced, renamed over the old one, the folder fsynced), so at every instant the path holds
either the previous complete checkpoint or the new complete one.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from tinylm.errors import CheckpointError
from tinylm.io import atomic_write

FORMAT_VERSION = 1


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    path_or_file: str | os.PathLike | BinaryIO,
    **extra: Any,
) -> None:
    """Save model, optimizer and iteration (plus `extra` plain values: configs, RNG and data state)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "iteration": int(iteration),
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        **extra,
    }
    if hasattr(path_or_file, "write"):
        torch.save(payload, path_or_file)
        return
    _atomic_save(payload, Path(path_or_file))


def _atomic_save(payload: dict, path: Path) -> None:
    """torch.save streamed through tinylm.io.atomic_write: the path holds the old or the new checkpoint, never half."""
    with atomic_write(path, "checkpoint") as f:
        torch.save(payload, f)


def read_checkpoint(path_or_file: str | os.PathLike | BinaryIO) -> dict:
    """Read a checkpoint's payload safely, with one clear error for missing, truncated or newer files."""
    name = getattr(path_or_file, "name", path_or_file)
    if not hasattr(path_or_file, "read"):
        p = Path(path_or_file)
        if p.is_dir():
            from tinylm.training.run_dir import RunDir

            p = RunDir(p).checkpoint
        if not p.exists():
            raise CheckpointError(f"no checkpoint at {p}")
        path_or_file, name = p, p
    try:
        payload = torch.load(path_or_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"checkpoint {name} is truncated or corrupt (UnpicklingError: {_first_line(exc)})") from None
        raise CheckpointError(
            f"checkpoint {name} holds objects other than tensors and plain values; it was not loaded, "
            "since unpickling them could run code (tinylm checkpoints never hold such objects)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = _first_line(exc).split(". ")[0]  # torch's zip reader adds several sentences of advice
        raise CheckpointError(f"checkpoint {name} is truncated or corrupt ({type(exc).__name__}: {reason})") from None
    if not isinstance(payload, dict) or "format_version" not in payload or "model" not in payload:
        raise CheckpointError(f"{name} is not a tinylm checkpoint (no format_version / model entries)")
    version = payload["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {name} has format version {version}, newer than this tinylm reads ({FORMAT_VERSION}); upgrade tinylm"
        )
    return payload


def load_checkpoint(
    path_or_file: str | os.PathLike | BinaryIO,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Restore model (and optimizer) state in place; return the iteration it was saved at."""
    payload = read_checkpoint(path_or_file)
    restore(payload, model, optimizer)
    return payload["iteration"]


def restore(payload: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Load a read payload into a model and optimizer, refusing one saved from another config."""
    model = _unwrap(model)
    saved_cfg = payload.get("model_config")
    own_cfg = getattr(model, "config", None)
    if saved_cfg is not None and hasattr(own_cfg, "to_dict"):
        diff = _config_diff(saved_cfg, own_cfg.to_dict())
        if diff:
            raise CheckpointError(f"checkpoint is from another model config: {diff}")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint does not fit this model: {_first_line(exc)}") from None
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise CheckpointError("checkpoint holds no optimizer state to resume from")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint's optimizer state does not fit this model: {exc}") from None


def load_model(path_or_file: str | os.PathLike | BinaryIO, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the TransformerLM a checkpoint was saved from; returns (model, payload)."""
    from tinylm.model.config import ModelConfig
    from tinylm.model.transformer import TransformerLM

    payload = read_checkpoint(path_or_file)
    if not isinstance(payload.get("model_config"), dict):
        raise CheckpointError("checkpoint records no model config; load it into a model you build with load_checkpoint")
    model = TransformerLM(ModelConfig.from_dict(payload["model_config"]))
    restore(payload, model)
    return model.to(device), payload


# Fields that change speed, not the function a model computes: a checkpoint moves freely across them.
_RUNTIME_FIELDS = {"fused_attention", "autocast", "compile"}


def _config_diff(saved: dict, own: dict) -> str:
    """The model settings that differ; a key a checkpoint lacks (saved before that field existed)
    counts as the field's default, which is what those models computed."""
    from tinylm.model.config import ModelConfig

    defaults = ModelConfig.field_defaults()
    saved = {**{k: v for k, v in defaults.items() if k in own}, **saved}
    keys = sorted((set(saved) | set(own)) - _RUNTIME_FIELDS)
    return ", ".join(f"{k}={saved.get(k)!r} in checkpoint vs {own.get(k)!r}" for k in keys if saved.get(k) != own.get(k))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DistributedDataParallel or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def capture_rng_state() -> dict:
    """Python, NumPy and torch global RNG states, as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of capture_rng_state (CUDA states only where the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
