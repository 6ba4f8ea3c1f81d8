"""Training: loss, AdamW, schedule, clipping, batches from token memmaps, checkpoints, the loop.

Public names (SPEC §5): AdamW, cross_entropy, cosine_lr, clip_grad_norm, get_batch,
save_checkpoint, load_checkpoint. The loop and its config live in `tinylm.training.loop` and
`tinylm.training.config` (imported on demand: they pull in plotting and the model).
"""

from tinylm.training.checkpoint import load_checkpoint, save_checkpoint
from tinylm.training.batches import get_batch
from tinylm.training.optim import AdamW, clip_grad_norm, cosine_lr, cross_entropy

__all__ = ["AdamW", "cross_entropy", "cosine_lr", "clip_grad_norm", "get_batch", "save_checkpoint", "load_checkpoint"]
