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
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid betas {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError("eps and weight_decay must be non-negative")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
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


def cosine_lr(it: int, lr_max: float, lr_min: float, warmup_iters: int, cosine_iters: int) -> float:
    """Linear warm-up to lr_max over `warmup_iters`, cosine down to lr_min at `cosine_iters`, then lr_min."""
    if it < warmup_iters:
        return lr_max * it / warmup_iters
    if it <= cosine_iters:
        span = cosine_iters - warmup_iters
        progress = (it - warmup_iters) / span if span > 0 else 1.0
        return lr_min + 0.5 * (1 + math.cos(math.pi * progress)) * (lr_max - lr_min)
    return lr_min


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients together so their global L2 norm is at most `max_norm`.

    Returns the norm before clipping as a tensor: reading it is the caller's choice, so the
    training step needs no host-device sync here.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    scale = (max_norm / (total + eps)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype))
    return total
