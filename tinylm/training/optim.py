"""Loss, optimizer, schedule and clipping written out, each checked against PyTorch's own in tests."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of `targets` under `logits` (..., V): log-sum-exp minus the target logit.

    In float32, with the log-sum-exp taken as max + log(sum(exp(x - max))) (torch.logsumexp), so
    logits of ±1e4 or bf16 logits from autocast give a finite, exact loss. logsumexp keeps only
    its input and output for backward: no extra (B, T, V) copies, which matters at vocab 50k.
    """
    logits = logits.float()
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(logits, dim=-1) - target_logit).mean()


def cross_entropy_with_z_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy + z_loss · mean(logsumexp(logits)²), the cross-entropy alone), both float32 scalars.

    The z-loss (PaLM, Chowdhery et al. 2022, §5; coefficient 1e-4 there) pulls log Z = logsumexp
    of each position's logits towards 0, which keeps the softmax's normaliser from drifting and the
    logits from growing without changing which token is likely. logsumexp is computed once and
    shared by both terms; `z_loss = 0` gives exactly `cross_entropy`.
    """
    logits = logits.float()
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    log_z = torch.logsumexp(logits, dim=-1)
    ce = (log_z - target_logit).mean()
    if z_loss == 0:
        return ce, ce
    return ce + z_loss * log_z.square().mean(), ce


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay and bias correction (Loshchilov & Hutter).

    The arithmetic follows torch.optim.AdamW's order of operations so the two agree to float
    rounding; the step count is a plain int so optimizer state loads with weights_only=True.
    `foreach` (default: on when the parameters are on a GPU) runs the same operations as
    multi-tensor `torch._foreach_*` kernels: a dozen kernel launches per step instead of a dozen
    per parameter tensor, which matters on a GPU where a small model's step is a few milliseconds.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 foreach: bool | None = None):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid betas {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must be non-negative")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.foreach = foreach  # not in the param groups: checkpoints stay as they were

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._group_step(group)
        return loss

    def _group_step(self, group: dict) -> None:
        """One parameter group's update (Muon overrides this to route its own groups)."""
        self._adamw_group(group)

    def _adamw_group(self, group: dict) -> None:
        """The AdamW update of one parameter group."""
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if _use_foreach(self.foreach, group["params"]):
            self._step_foreach(group["params"], lr, beta1, beta2, eps, wd)
            return
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad
            state = self._advance(p)
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            p.mul_(1 - lr * wd)
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias_correction1 = 1 - beta1**t
            bias_correction2_sqrt = math.sqrt(1 - beta2**t)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)
            p.addcdiv_(m, denom, value=-lr / bias_correction1)

    def _advance(self, p: torch.Tensor) -> dict:
        """p's state (step count and both moments, created at zero on first use), its step counted."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state

    def _step_foreach(self, group_params, lr, beta1, beta2, eps, wd) -> None:
        """The loop's update, operation for operation, on all tensors of a group (per step count) at once."""
        by_step: dict[int, list[torch.Tensor]] = {}
        for p in group_params:
            if p.grad is None:
                continue
            by_step.setdefault(self._advance(p)["step"], []).append(p)
        for t, params in by_step.items():
            grads = [p.grad for p in params]
            ms = [self.state[p]["exp_avg"] for p in params]
            vs = [self.state[p]["exp_avg_sq"] for p in params]
            torch._foreach_mul_(params, 1 - lr * wd)
            torch._foreach_lerp_(ms, grads, 1 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_div_(denom, math.sqrt(1 - beta2**t))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, ms, denom, value=-lr / (1 - beta1**t))


# Keller Jordan's quintic Newton–Schulz coefficients (github.com/KellerJordan/Muon, muon.py): chosen so
# that p(x) = a·x + b·x³ + c·x⁵ has a large slope at 0 and maps (0, 1] into about [0.68, 1.13] in 5 steps,
# i.e. orthogonal only approximately, which trains as well as the exact polar factor and costs 5 steps.
MUON_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# The classic cubic Newton–Schulz iteration (1.5·x - 0.5·x³): converges to the exact polar factor.
CUBIC_NS_COEFFICIENTS = (1.5, -0.5, 0.0)


def newton_schulz_orthogonalize(g: torch.Tensor, steps: int = 5,
                                coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS,
                                eps: float = 1e-7) -> torch.Tensor:
    """Approximately the polar factor U Vᵀ of g = U S Vᵀ (shape (m, n), or (..., m, n) for a batch of
    matrices each orthogonalised on its own; float32 out), by Newton–Schulz.

    g is scaled to Frobenius norm 1 (so every singular value is in (0, 1]), then `steps` times
    X <- a·X + (b·A + c·A²)·X with A = X Xᵀ, which maps each singular value x to p(x) = a·x + b·x³ + c·x⁵
    and leaves the singular vectors alone. The work is done on the wide orientation (m <= n), so A
    is the smaller Gram matrix. Computed in float32 (Keller Jordan's reference uses bf16 on GPU).
    """
    a, b, c = coefficients
    x = g.float()
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


def orthogonalize_all(matrices: list[torch.Tensor], steps: int = 5, batched: bool = True) -> list[torch.Tensor]:
    """newton_schulz_orthogonalize of each of `matrices` (all of one shape): as one stacked batch, or
    one at a time. Both give each matrix its own result (the same arithmetic, in another order)."""
    if batched:
        return list(newton_schulz_orthogonalize(torch.stack(matrices), steps).unbind(0))
    return [newton_schulz_orthogonalize(m, steps) for m in matrices]


class Muon(AdamW):
    """Muon for the groups marked `use_muon=True`, AdamW (this module's) for every other group.

    Muon (Keller Jordan, 2024; github.com/KellerJordan/Muon `muon_update`): for each 2-D weight W with
    gradient G, momentum M <- β·M + (1-β)·G; the update direction is the Nesterov blend
    U = (1-β)·G + β·M (`nesterov`, default) or M, orthogonalised by `ns_steps` quintic Newton–Schulz
    steps and scaled by sqrt(max(1, rows/cols)); then W <- W·(1 - lr·wd) - lr·orth(U). Muon groups
    carry `momentum`, `nesterov`, `ns_steps`, `lr`, `weight_decay`; their state is one
    `momentum_buffer` per weight (in the checkpoint like AdamW's moments). Only matrices belong in
    Muon groups: embeddings, the LM head and gains go to the AdamW groups (Muon's own advice).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 foreach: bool | None = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)
        for group in self.param_groups:
            group.setdefault("use_muon", False)
            if group["use_muon"]:
                for key, default in (("momentum", 0.95), ("nesterov", True), ("ns_steps", 5)):
                    group.setdefault(key, default)
                if not 0 <= group["momentum"] < 1:
                    raise ValueError(f"invalid Muon momentum {group['momentum']}")
                if any(p.ndim != 2 for p in group["params"]):
                    raise ValueError("Muon groups take 2-D weight matrices only")

    def _group_step(self, group: dict) -> None:
        if group.get("use_muon"):
            self._muon_group(group)
        else:
            self._adamw_group(group)

    def _muon_group(self, group: dict) -> None:
        """Momentum per weight, then on a GPU one batched Newton–Schulz per shape (the blocks' q, k, v,
        o and feed-forward matrices come in a few shapes: a handful of batched matrix products instead
        of hundreds of small kernel launches per step; 1.84x the TinyStories recipe's tokens/s on an
        H200); on the CPU batched too when torch runs more than one thread, else one matrix at a time
        (_batch_newton_schulz). The same arithmetic per matrix."""
        lr, wd, beta = group["lr"], group["weight_decay"], group["momentum"]
        by_shape: dict[tuple, list] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad
            state = self.state[p]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m = state["momentum_buffer"]
            m.lerp_(grad, 1 - beta)
            direction = grad.lerp(m, beta) if group["nesterov"] else m
            by_shape.setdefault((tuple(p.shape), p.device), []).append((p, direction))
        for (shape, device), items in by_shape.items():
            updates = orthogonalize_all([d for _, d in items], group["ns_steps"], batched=_batch_newton_schulz(device))
            scale = max(1.0, shape[-2] / shape[-1]) ** 0.5
            for (p, _), update in zip(items, updates):
                p.mul_(1 - lr * wd)
                p.add_(update.to(p.dtype), alpha=-lr * scale)


def _batch_newton_schulz(device: torch.device) -> bool:
    """Whether Muon orthogonalises each shape's matrices in one batched product (orthogonalize_all).

    Always on a GPU. On the CPU only with more than one torch thread: for the quick-start model's
    matrices (16 of 128x128, 8 of 320x128, 4 of 128x320, 5 steps) batched took 21-22 ms a step
    against 23-29 ms one at a time with 2 threads, but 36-50 ms against 26-38 ms with 1 thread
    (docs/EXPERIMENTS.md §8)."""
    return device.type != "cpu" or torch.get_num_threads() > 1


def _use_foreach(foreach: bool | None, params) -> bool:
    if foreach is not None:
        return foreach
    return any(p.is_cuda for p in params)


def cosine_lr(it: int, lr_max: float, lr_min: float, warmup_iters: int, cosine_iters: int) -> float:
    """Linear warm-up to lr_max over `warmup_iters`, cosine down to lr_min at `cosine_iters`, then lr_min.

    The course's schedule (CS336 assignment 1) at iteration `it`. The trainer passes the number of
    the step about to run, counted from 1: `it = 0` would give the first warm-up step lr 0.
    """
    if it < warmup_iters:
        return lr_max * it / warmup_iters
    if it <= cosine_iters:
        span = cosine_iters - warmup_iters
        progress = (it - warmup_iters) / span if span > 0 else 1.0
        return lr_min + 0.5 * (1 + math.cos(math.pi * progress)) * (lr_max - lr_min)
    return lr_min


def budget_lr(step: int, fraction: float, lr_max: float, lr_min: float, warmup_iters: int, warmup_end: float = 0.0) -> float:
    """Learning rate for a wall-clock budget: linear warm-up over the first `warmup_iters` steps
    (step numbered from 1, as in `cosine_lr`), then a cosine from lr_max to lr_min over the rest of
    the budget: from `warmup_end`, the elapsed fraction at which step `warmup_iters` started, to 1.
    So step `warmup_iters` runs at lr_max, as in the step schedule, and the decay completes when the
    budget does however fast the steps turn out to be. `fraction` is clamped to [warmup_end, 1]."""
    if step < warmup_iters:
        return lr_max * step / warmup_iters
    span = 1.0 - warmup_end
    progress = min(max((fraction - warmup_end) / span, 0.0), 1.0) if span > 0 else 1.0
    return lr_min + 0.5 * (1 + math.cos(math.pi * progress)) * (lr_max - lr_min)


DECAY_SHAPES = ("linear", "sqrt")


def wsd_lr(it: int, lr_max: float, lr_min: float, warmup_iters: int, total_iters: int, decay_fraction: float,
           decay_shape: str = "linear") -> float:
    """Warm-up–stable–decay at step `it` (numbered from 1, as in `cosine_lr`): linear warm-up to lr_max
    over `warmup_iters`, lr_max until the last `decay_fraction` of `total_iters`, then a decay to
    lr_min at `total_iters` ("linear", or "sqrt": the 1 − sqrt cooldown), and lr_min after (Hägele et
    al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", §3, where
    1 − sqrt beat linear; MiniCPM's WSD)."""
    if it < warmup_iters:
        return lr_max * it / warmup_iters
    return _wsd_after_warmup(it / total_iters if total_iters > 0 else 1.0, lr_max, lr_min, decay_fraction, decay_shape)


def wsd_budget_lr(step: int, fraction: float, lr_max: float, lr_min: float, warmup_iters: int, decay_fraction: float,
                  decay_shape: str = "linear") -> float:
    """`wsd_lr` for a wall-clock budget: warm-up over the first steps, then stable and decay over
    `fraction`, the elapsed share of the budget after warm-up (clamped to [0, 1]; the Trainer measures
    it from the end of warm-up, as `budget_lr` does for the cosine)."""
    if step < warmup_iters:
        return lr_max * step / warmup_iters
    return _wsd_after_warmup(fraction, lr_max, lr_min, decay_fraction, decay_shape)


def _wsd_after_warmup(progress: float, lr_max: float, lr_min: float, decay_fraction: float,
                      decay_shape: str = "linear") -> float:
    """lr_max until progress 1 - decay_fraction, then down to lr_min at progress 1 (progress clamped;
    decay_fraction in (0, 1], checked by TrainConfig.validate): with t the share of the decay done,
    lr_max − (lr_max − lr_min)·t ("linear") or lr_min + (lr_max − lr_min)·(1 − sqrt(t)) ("sqrt")."""
    progress = min(max(progress, 0.0), 1.0)
    decay_start = 1.0 - decay_fraction
    if progress <= decay_start:
        return lr_max
    t = (progress - decay_start) / decay_fraction
    if decay_shape == "sqrt":
        return lr_min + (lr_max - lr_min) * (1.0 - math.sqrt(t))
    if decay_shape != "linear":
        raise ValueError(f"decay_shape must be one of {', '.join(DECAY_SHAPES)}, got {decay_shape!r}")
    return lr_max + (lr_min - lr_max) * t


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float, eps: float = 1e-6,
                   foreach: bool | None = None) -> torch.Tensor:
    """Scale all gradients together so their global L2 norm is at most `max_norm`.

    Returns the norm before clipping as a tensor: reading it is the caller's choice, so the
    training step needs no host-device sync here.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if _use_foreach(foreach, grads) and all(g.dtype == torch.float32 for g in grads):  # GPU: 3 kernels, not 2 per tensor
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        torch._foreach_mul_(grads, (max_norm / (total + eps)).clamp(max=1.0))
        return total
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    scale = (max_norm / (total + eps)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return total
