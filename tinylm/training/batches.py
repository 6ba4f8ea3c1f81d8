"""Token files on disk, read through np.memmap, and random training windows drawn from them.

Token files are what `tinylm encode` writes: `.npy` (dtype in the header) or raw `.bin`
(uint16 unless told otherwise). They are never read whole into memory; only the sampled windows
are touched. Batch sampling takes an explicit torch.Generator so a checkpoint can store its state
and a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tinylm.errors import DataError, InputFileError
from tinylm.tokenizer.token_dtypes import TOKEN_DTYPES

_SCAN_CHUNK = 1 << 24


def load_tokens(path: str | os.PathLike, dtype: str = "uint16") -> np.ndarray:
    """Open a token file as a read-only memmap (`.npy` header wins over `dtype`)."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"token file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"token file path is a directory: {p}")
    if p.stat().st_size == 0:
        raise DataError(f"token file is empty: {p}")
    if p.suffix == ".npy":
        try:
            tokens = np.load(p, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"token file {p} is not a readable .npy array (truncated?): {exc}") from None
        if tokens.dtype not in (np.uint16, np.uint32) or tokens.ndim != 1:
            raise DataError(
                f"token file {p} holds a {tokens.ndim}-d {tokens.dtype} array; expected a 1-d uint16 or uint32 array"
            )
        return tokens
    if dtype not in TOKEN_DTYPES:
        raise DataError(f"token dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    np_dtype = np.dtype(TOKEN_DTYPES[dtype])
    size = p.stat().st_size
    if size % np_dtype.itemsize:
        raise DataError(
            f"token file {p} is {size} bytes, not a whole number of {dtype} tokens (wrong dtype or truncated?)"
        )
    return np.memmap(p, dtype=np_dtype, mode="r")


def check_tokens(tokens: np.ndarray, vocab_size: int, context_length: int, name: str = "token file") -> None:
    """Fail early, with the numbers, when a token file cannot feed this model."""
    if len(tokens) < context_length + 1:
        raise DataError(
            f"{name} has {len(tokens)} tokens, fewer than one training example needs "
            f"(context_length + 1 = {context_length + 1}); use more data or a shorter context"
        )
    if np.iinfo(tokens.dtype).max >= vocab_size:
        top = max(int(tokens[i : i + _SCAN_CHUNK].max()) for i in range(0, len(tokens), _SCAN_CHUNK))
        if top >= vocab_size:
            raise DataError(
                f"{name} holds token id {top}, outside the model's vocabulary of {vocab_size} "
                "(encoded with another tokenizer?)"
            )


def get_batch(
    tokens: np.ndarray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` windows at uniformly random start offsets: inputs and next-token targets, int64 (B, T).

    Every start in [0, len(tokens) - context_length - 1] is possible, so every token can be a
    target. `generator` (CPU) makes the draw reproducible and resumable.
    """
    n_starts = len(tokens) - context_length
    if n_starts < 1:
        raise DataError(
            f"token array has {len(tokens)} tokens, fewer than context_length + 1 = {context_length + 1}"
        )
    starts = torch.randint(n_starts, (batch_size,), generator=generator).numpy()
    return windows(tokens, starts, context_length, device)


def windows(tokens: np.ndarray, starts: np.ndarray, context_length: int, device: str | torch.device):
    """The (inputs, targets) pair for explicit start offsets; shared by sampling and evaluation."""
    idx = starts[:, None] + np.arange(context_length + 1)
    block = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))
    device = torch.device(device)
    if device.type == "cuda":
        block = block.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        block = block.to(device)
    return block[:, :-1], block[:, 1:]


def eval_starts(num_tokens: int, context_length: int, num_windows: int) -> np.ndarray:
    """Evenly spaced, fixed window starts over a file: every evaluation sees the same text."""
    last = num_tokens - context_length - 1
    return np.unique(np.linspace(0, last, num=num_windows).astype(np.int64))


def token_byte_lengths(vocab: dict[int, bytes], vocab_size: int) -> np.ndarray:
    """Bytes of text behind each id, for bits-per-byte (ids without an entry count as 0)."""
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for idx, token in vocab.items():
        if idx < vocab_size:
            lengths[idx] = len(token)
    return lengths
