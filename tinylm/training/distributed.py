"""Several processes, one run: torchrun's environment, DistributedDataParallel, per-rank batches.

`tinylm train` runs unchanged under `torchrun --nproc_per_node N` (and on several nodes with
`--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT`). torchrun sets RANK, WORLD_SIZE and
LOCAL_RANK; `Distributed.from_env` reads them and joins the process group: NCCL on CUDA (each
process on cuda:LOCAL_RANK), gloo on CPU. With no such variables, or WORLD_SIZE=1, everything here
is the identity and a run is exactly the single-process run.

Batches. Every rank holds the same batch-sampler generator (same seed, same state; the checkpoint
stores it once). Each step every rank draws the start offsets of the whole global batch of
G = world_size × grad_accum_steps × batch_size windows (G integers: cheap) and reads only its own
slice from the memmap: rank r takes starts[r·A·B : (r+1)·A·B], cut into A micro-batches of B.
So which text a step trains on depends only on G, never on how it is split across processes or
micro-batches: N processes see exactly the windows one process with batch G sees, and a run
resumed under another world size with the same global batch continues the very same sequence of
batches. Each micro-batch's mean loss is divided by A and DDP averages gradients over ranks, so
the step's gradient is the mean over the G windows: equal to the one-process gradient up to the
order of float additions (tests/training/test_distributed.py checks it to float tolerance).

Agreement. Stopping (Ctrl-C / SIGTERM, which torchrun forwards to every worker, or the on_step hook)
and the CPU per-step NaN check must be decided by all ranks together, or one rank would wait
forever in a collective the others never join. `agree` ORs such flags over ranks with one tiny
all-reduce on a gloo (CPU) group: no host-device sync, even under NCCL.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass

import numpy as np
import torch

from tinylm.errors import ConfigError

# Words in the errors gloo / NCCL raise when another process died or the network failed.
_PEER_LOSS_HINTS = ("connection reset", "connection closed", "connection refused", "broken pipe", "peer",
                    "timed out", "timeout", "nccl", "gloo", "socket", "store")


@dataclass
class Distributed:
    """Where this process stands in the run: rank, world size, device, and the process groups."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # processes on this node (torchrun's --nproc_per_node)
    backend: str | None = None
    owns_group: bool = False  # we initialised the default process group, so we destroy it
    control_group: object = None  # gloo group for CPU-side agreement (the default group under gloo)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, plots and writes checkpoints and metrics."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str) -> tuple[Distributed, torch.device]:
        """Read torchrun's variables, join the process group, pick this process's device."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(), torch.device(device)
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        kind = torch.device(device).type
        if kind == "cuda":
            if not torch.cuda.is_available():
                raise ConfigError("train.device is cuda but no CUDA device is available")
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(
                    f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPU(s): "
                    "use --nproc_per_node at most the number of GPUs"
                )
            torch_device = torch.device("cuda", local_rank)  # one GPU per process, whatever cuda:N said
            torch.cuda.set_device(torch_device)
            backend = "nccl"
        elif kind == "cpu":
            torch_device, backend = torch.device("cpu"), "gloo"
        else:
            raise ConfigError(f"multi-process training runs on cpu (gloo) or cuda (NCCL), not {device}")
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(backend=backend)
        control = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        return cls(rank, world, local_rank, local_world, backend, owns, control), torch_device

    # --- the model ---------------------------------------------------------------------------------
    def wrap(self, model: torch.nn.Module, device: torch.device, compile: bool = False) -> torch.nn.Module:
        """DistributedDataParallel around the model (the model itself on one process).

        DDP broadcasts rank 0's parameters at construction, so every rank starts identical.
        Checkpoints store the unwrapped module's state dict (checkpoint._unwrap), keys unchanged.

        With `compile`, torch.compile wraps the DDP module (the model arrives uncompiled): dynamo's
        DDPOptimizer then cuts the graph at DDP's gradient buckets, so each bucket's all-reduce
        overlaps the rest of the backward. A model compiled inside DDP would hand over every
        gradient at the end of one fused backward and only then start communicating.
        """
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        # the only buffers (RoPE tables) are computed, never trained: no need to sync them every forward
        params = inspect.signature(DistributedDataParallel).parameters
        quiet = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}
        ddp = DistributedDataParallel(model, device_ids=ids, **quiet)
        return torch.compile(ddp) if compile else ddp

    @staticmethod
    def sync_gradients(model: torch.nn.Module, sync: bool):
        """`model.no_sync()` on all but the last micro-batch of an accumulated step."""
        if sync or not hasattr(model, "no_sync"):
            return contextlib.nullcontext()
        return model.no_sync()

    # --- collectives ------------------------------------------------------------------------------
    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag OR-ed over all ranks (a CPU all-reduce; the flags themselves on one process)."""
        if not self.enabled:
            return tuple(bool(f) for f in flags)
        import torch.distributed as dist

        t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control_group)
        return tuple(bool(v) for v in t.tolist())

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over ranks (in place; itself on one process)."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return tensor
        return self.sum(tensor) / self.world_size

    def max(self, value: float) -> float:
        """The largest of a float over ranks (a CPU all-reduce; the value itself on one process)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control_group)
        return float(t[0])

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier(group=self.control_group)

    def close(self, together: bool = False) -> None:
        """Leave the process group if we joined it (also after a peer died: avoids an abort at exit).

        together: every process got here (a run that finished or stopped by agreement), so they
        first wait for each other. Without that, one process tearing its connections down while
        another is still leaving could make the latter's gloo threads abort the process at exit
        (`terminate called without an active exception`, seen with two torchrun nodes).

        The caller drops its DDP wrapper first (Trainer.run does): the wrapper's reducer holds the
        process group and the work handles of the last all-reduce, with their tensors. Anything of
        the group still alive when the interpreter shuts down is destroyed by C++ destructors in a
        half-torn-down process, which can abort it (SIGABRT) after a run that finished: so the
        last references go here, garbage collection included, while the interpreter is whole.
        """
        if self.enabled and self.owns_group:
            import gc

            import torch.distributed as dist

            gc.collect()  # wrappers the caller dropped (DDP and its reducer) are freed now, not at exit
            if dist.is_initialized():
                try:
                    if together:
                        dist.barrier(group=self.control_group)
                    dist.destroy_process_group()
                except Exception:  # noqa: BLE001 - a broken group may not tear down cleanly
                    pass
            self.control_group = None
            gc.collect()  # the groups' last references: their gloo threads are joined here, not in interpreter shutdown
            self.owns_group = False

    def is_peer_loss(self, exc: BaseException) -> bool:
        """Whether an error raised in a step is (most likely) another process dying or the network failing."""
        if not self.enabled or not isinstance(exc, RuntimeError):
            return False
        import torch.distributed as dist

        if isinstance(exc, getattr(dist, "DistError", ())):
            return True
        text = str(exc).lower()
        return any(h in text for h in _PEER_LOSS_HINTS)


# --- batches -----------------------------------------------------------------------------------------
def rank_batches(
    tokens: np.ndarray,
    micro_batch: int,
    accum_steps: int,
    context_length: int,
    device: torch.device,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's `accum_steps` micro-batches of the next global batch (see the module docstring).

    On one process with one micro-batch this draws exactly what `data.get_batch` draws.
    """
    from tinylm.training.batches import windows

    n_starts = len(tokens) - context_length
    global_batch = micro_batch * accum_steps * world_size
    starts = torch.randint(n_starts, (global_batch,), generator=generator).numpy()
    mine = starts[rank * accum_steps * micro_batch : (rank + 1) * accum_steps * micro_batch]
    return [windows(tokens, mine[i * micro_batch : (i + 1) * micro_batch], context_length, device) for i in range(accum_steps)]


# --- device speed settings -------------------------------------------------------------------------------
def configure_device(device: torch.device, tf32: bool) -> None:
    """CUDA: TF32 tensor cores for float32 matmuls and convolutions (bf16 autocast is the model's own switch)."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
