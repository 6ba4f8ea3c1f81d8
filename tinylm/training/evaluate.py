"""Validation loss and bits per byte: the one evaluation used by training, the quick start and sweeps.

Bits per byte is the tokenizer-independent figure (nanochat's `evaluate_bpb`, the course's
"bits per byte"): the summed cross-entropy of the predicted tokens, in bits, divided by the UTF-8
bytes those tokens stand for,

    bpb = Σ nats / ln 2 / Σ bytes(target token)

so two models with different tokenizers compare on the same text. Without a vocabulary (token
files without a tokenizer) the bytes come from a mean bytes-per-token figure instead.

The windows are fixed, evenly spaced start offsets over the validation file (`data.eval_starts`),
the same for every batch size and process count: the batch size only decides how they are
chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tinylm.training.batches import windows
from tinylm.training.optim import cross_entropy


@dataclass
class Evaluation:
    """Loss in nats per predicted token, bits per byte, and what they were measured on."""

    loss: float  # mean cross-entropy, nats per token
    bpb: float | None  # bits per byte; None without byte lengths
    tokens: int  # predicted tokens
    bytes: float  # UTF-8 bytes behind the predicted tokens (a mean-based estimate without a vocabulary)
    windows: int

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    def as_record(self) -> dict:
        """The metrics.jsonl fields: val_loss, val_perplexity and (when known) val_bpb."""
        record = {"val_loss": self.loss, "val_perplexity": self.perplexity}
        if self.bpb is not None:
            record["val_bpb"] = self.bpb
        return record


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module,
    tokens: np.ndarray,
    starts: np.ndarray,
    context_length: int,
    batch_size: int,
    device: torch.device | str,
    token_bytes: np.ndarray | None = None,
    bytes_per_token: float | None = None,
    dist=None,
    progress=None,
) -> Evaluation:
    """Cross-entropy and bits per byte of `model` on the windows of `tokens` starting at `starts`.

    tokens: 1-d token ids (a memmap is fine: only the windows are read). starts: int64 window
    offsets; each window predicts tokens[s+1 : s+1+context_length]. token_bytes: (vocab,) int64
    UTF-8 length of each id (`data.token_byte_lengths`: a special token counts its literal text,
    e.g. 13 bytes for <|endoftext|>, as the `tinylm encode` sidecar counts it) for exact bits per
    byte; else `bytes_per_token` (a file's mean) estimates it; neither: bpb is None.
    dist: a `distributed.Distributed`; several processes each take every world_size-th chunk of
    `batch_size` windows and the sums are added, so every process returns the same figures.
    progress: optional callable wrapping the chunk iterator (a progress bar).
    The model is put in eval mode and back in train mode.
    """
    device = torch.device(device)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # nats, bytes
    chunks = range(rank * batch_size, len(starts), batch_size * world)
    was_training = model.training
    model.eval()
    try:
        for i in progress(chunks) if progress is not None else chunks:
            chunk = starts[i : i + batch_size]
            inputs, targets = windows(tokens, chunk, context_length, device)
            sums[0] += cross_entropy(model(inputs), targets).double() * targets.numel()
            if token_bytes is not None:  # the targets' bytes, read on the host (no device sync)
                sums[1] += float(token_bytes[np.asarray(tokens[chunk[:, None] + 1 + np.arange(context_length)])].sum())
    finally:
        model.train(was_training)
    if dist is not None:
        dist.sum(sums)
    nats, counted_bytes = float(sums[0]), float(sums[1])
    predicted = len(starts) * context_length
    if token_bytes is None:
        counted_bytes = predicted * bytes_per_token if bytes_per_token else 0.0
    bpb = nats / math.log(2) / counted_bytes if counted_bytes > 0 else None
    return Evaluation(loss=nats / predicted, bpb=bpb, tokens=predicted, bytes=counted_bytes, windows=len(starts))
