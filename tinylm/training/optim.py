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
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            if _use_foreach(self.foreach, group["params"]):
                self._step_foreach(group["params"], lr, beta1, beta2, eps, wd)
                continue
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
        return loss

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
