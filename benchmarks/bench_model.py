"""Forward+backward tokens/s of the TinyStories model: from-scratch path, fast path, and the same
architecture written with PyTorch's built-in layers, all in one run.

    python benchmarks/bench_model.py                      # CPU, batch 8×256, 2 threads
    python benchmarks/bench_model.py --device cuda --batch-size 64
    python benchmarks/bench_model.py --bf16 --compile     # add autocast / torch.compile variants

Models share the same weights (the built-in one loads tinylm's state dict) and are checked to give
the same logits before timing. Steps are interleaved round-robin so drift (other processes, CPU
clocks) hits every variant alike; the table reports medians of wall-clock time (what a user waits)
and of process CPU time (steadier when other jobs share the cores; CPU runs only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.model import ModelConfig, TransformerLM
from tinylm.model.accounting import preset


# --------------------------------------------------------------- the same model from built-in layers
class BuiltinRoPE(nn.Module):
    def __init__(self, theta, d_k, max_len):
        super().__init__()
        angles = torch.outer(torch.arange(max_len).float(), theta ** (-torch.arange(0, d_k, 2).float() / d_k))
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x):  # (B, H, T, d_k), interleaved pairs
        T = x.shape[-2]
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2)


class BuiltinAttention(nn.Module):
    def __init__(self, c: ModelConfig, rope):
        super().__init__()
        self.h = c.num_heads
        self.q_proj, self.k_proj, self.v_proj, self.output_proj = (
            nn.Linear(c.d_model, c.d_model, bias=False) for _ in range(4)
        )
        self.rope = rope

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = (p(x).view(B, T, self.h, D // self.h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
        return self.output_proj(y.transpose(1, 2).reshape(B, T, D))


class BuiltinFFN(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(c.d_model, c.ffn_dim, bias=False)
        self.w2 = nn.Linear(c.ffn_dim, c.d_model, bias=False)
        self.w3 = nn.Linear(c.d_model, c.ffn_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class BuiltinBlock(nn.Module):
    def __init__(self, c: ModelConfig, rope):
        super().__init__()
        self.ln1, self.ln2 = nn.RMSNorm(c.d_model, eps=1e-5), nn.RMSNorm(c.d_model, eps=1e-5)
        self.attn, self.ffn = BuiltinAttention(c, rope), BuiltinFFN(c)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class BuiltinLM(nn.Module):
    """Pre-norm SwiGLU/RoPE LM from nn.Embedding, nn.Linear, nn.RMSNorm, F.scaled_dot_product_attention."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        rope = BuiltinRoPE(c.rope_theta, c.head_dim, c.context_length)
        self.token_embeddings = nn.Embedding(c.vocab_size, c.d_model)
        self.layers = nn.ModuleList(BuiltinBlock(c, rope) for _ in range(c.num_layers))
        self.ln_final = nn.RMSNorm(c.d_model, eps=1e-5)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def forward(self, ids):
        x = self.token_embeddings(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.ln_final(x))


# ---------------------------------------------------------------------------------------- timing
def build_variants(config: ModelConfig, device: str, bf16: bool, compile_: bool) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    scratch = TransformerLM(config.reference()).to(device)
    fast = TransformerLM(config.replace(fused_attention=True, autocast="auto")).to(device)
    builtin = BuiltinLM(config).to(device)
    for model in (fast, builtin):
        model.load_state_dict(scratch.state_dict())
    variants = {"from-scratch": scratch, "fast path": fast, "built-in": builtin}
    if bf16:
        variants["fast path + bf16"] = TransformerLM(config.replace(autocast="bf16")).to(device)
        variants["fast path + bf16"].load_state_dict(scratch.state_dict())
    if compile_:
        for name in ("fast path", "built-in"):
            twin = TransformerLM(config) if name == "fast path" else BuiltinLM(config)
            twin = twin.to(device)
            twin.load_state_dict(scratch.state_dict())
            twin.compile()
            variants[f"{name} + compile"] = twin
    return variants


def agreement_bound(model: nn.Module, ref_logits: torch.Tensor) -> float:
    """How far a variant's logits may be from the float32 from-scratch model's: 1e-3 in float32 (reordered
    sums), and under bf16 autocast (the fast path's default on CUDA) tests/conftest.py's bf16 rule, 4 bf16
    ulps per layer of the largest logit, plus the fast-path tests' 0.06 floor (bf16 vs float32 weights)."""
    config = getattr(model, "config", None)
    bf16 = config is not None and (config.autocast == "bf16" or (config.autocast == "auto" and ref_logits.is_cuda))
    if not bf16:
        return 1e-3
    scale = max(1.0, float(ref_logits.abs().max()))
    return 0.06 + 4 * torch.finfo(torch.bfloat16).eps * config.num_layers * scale


def train_step(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    logits = model(ids)
    F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten()).backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--context-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--bf16", action="store_true", help="also time the fast path under bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd fast and built-in models")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    config = preset("tinystories").replace(context_length=args.context_length)
    variants = build_variants(config, args.device, args.bf16, args.compile)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (args.batch_size, args.context_length + 1), generator=gen)
    ids = ids.to(args.device)
    inputs, targets = ids[:, :-1], ids[:, 1:]

    with torch.no_grad():  # the same function, or the comparison means nothing
        ref = variants["from-scratch"](inputs)
        for name in ("fast path", "built-in"):
            err = (variants[name](inputs) - ref).abs().max().item()
            bound = agreement_bound(variants[name], ref)
            assert err < bound, f"{name} differs from the from-scratch model by {err} (allowed {bound:.3g})"

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for model in variants.values():
        for _ in range(args.warmup):
            train_step(model, inputs, targets)
    times = {name: [] for name in variants}
    cpu_times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, model in variants.items():
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            train_step(model, inputs, targets)
            sync()
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)

    tokens = args.batch_size * args.context_length
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    print(f"TinyStories model ({sum(p.numel() for p in variants['built-in'].parameters()):,} params), "
          f"batch {args.batch_size}×{args.context_length}, forward+backward, {device}, torch {torch.__version__}, "
          f"median of {args.repeats} after {args.warmup} warm-up, load average {os.getloadavg()[0]:.1f}\n")
    base, cpu_base = statistics.median(times["built-in"]), statistics.median(cpu_times["built-in"])
    print("| variant | wall s/step | tokens/s | vs built-in | CPU s/step | vs built-in (CPU time) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in variants:
        wall, cpu = statistics.median(times[name]), statistics.median(cpu_times[name])
        print(f"| {name} | {wall:.3f} | {tokens / wall:,.0f} | {base / wall:.2f}× | {cpu:.2f} | {cpu_base / cpu:.2f}× |")


if __name__ == "__main__":
    main()
