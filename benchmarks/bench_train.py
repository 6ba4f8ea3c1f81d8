"""Training throughput of the TinyStories model, with each step split into its parts.

Runs the trainer's own step pieces (tinylm.training.loop.Trainer) on a synthetic token file and
times data loading, forward+backward, optimizer (clipping + AdamW) and logging separately, with a
device sync between parts on CUDA so each part is charged its own time. The point: everything but
the model's compute should be a few percent of a step. Then it times the same steps back to back
with no sync but one at the end (the loop as it runs) for tokens/s and MFU:

    MFU = training FLOPs per token × tokens/s ÷ peak FLOP/s
    training FLOPs per token = 3 × forward matmul FLOPs per token (tinylm.model.accounting.forward_flops
                               of one sequence ÷ context_length: forward 1×, backward 2×)

Peak FLOP/s: --peak-tflops, else a table of dense bf16 peaks by GPU name (H100 SXM / H200: 989,
H100 PCIe: 756, A100: 312); on CPU, or a GPU not in the table, MFU is "n/a" unless the flag is given.

    python benchmarks/bench_train.py                         # CPU, small batch (MFU n/a)
    python benchmarks/bench_train.py --device cuda --bf16 --compile --batch-size 128 --steps 50 --warmup 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinylm.model.accounting import forward_flops
from tinylm.training.config import TrainConfig
from tinylm.training.loop import Trainer, MetricWindow

TINYSTORIES = dict(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344, rope_theta=10_000.0)
PARTS = ("data", "forward_backward", "optimizer", "logging")
# Dense bf16 tensor-core peaks, TFLOP/s (vendor datasheets; "with sparsity" figures are twice these).
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))
TINYSTORIES_RUN_TOKENS = 327_680_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--context-length", type=int, default=TINYSTORIES["context_length"])
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after --warmup untimed ones)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--autocast", default="auto", choices=["auto", "bf16", "none"])
    ap.add_argument("--bf16", action="store_const", const="bf16", dest="autocast", help="same as --autocast bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (train.grad_accum_steps)")
    ap.add_argument("--no-tf32", action="store_true", help="CUDA: keep float32 matmuls in full precision")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="peak FLOP/s of the device in TFLOP/s for MFU (default: table for H100/H200/A100; CPU: n/a)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.npy"
        np.save(tokens, np.random.default_rng(0).integers(0, TINYSTORIES["vocab_size"], 2_000_000, dtype=np.uint16))
        model = dict(TINYSTORIES, context_length=args.context_length, autocast=args.autocast, compile=args.compile)
        config = TrainConfig.from_dict({
            "model": model,
            "data": {"train": str(tokens)},
            "optim": {"warmup_iters": 10},
            "train": {"batch_size": args.batch_size, "grad_accum_steps": args.grad_accum, "max_steps": 100_000,
                      "device": args.device, "tf32": not args.no_tf32, "out_dir": str(Path(tmp) / "run"), "progress": False},
        })
        trainer = Trainer(config)
        times = {p: [] for p in PARTS}
        with open(Path(tmp) / "metrics.jsonl", "w") as log:
            for i in range(args.warmup + args.steps):
                step_times = time_step(trainer, log, args.device)
                if i >= args.warmup:
                    for p in PARTS:
                        times[p].append(step_times[p])
        loop_seconds = time_loop(trainer, args.steps, args.device)
    report(args, trainer, times, loop_seconds)


def _sync(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def time_step(trainer: Trainer, log, device: str) -> dict:
    """One training step as the loop runs it, logging every step (the worst case)."""
    t0 = _sync(device)
    window = MetricWindow(trainer.step, trainer.device)
    lr = trainer.set_lr()
    trainer.generator.get_state()
    batches = trainer.draw_batch()
    t1 = _sync(device)
    loss = trainer.forward_backward(batches)
    t2 = _sync(device)
    grad_norm = trainer.clip()
    finite = bool(torch.isfinite(loss) & torch.isfinite(grad_norm))  # the loop's per-step check
    trainer.optimizer_step()
    trainer.step += 1
    t3 = _sync(device)
    window.add(loss, grad_norm)
    log.write(json.dumps(trainer.record(window, lr, grad_norm)) + "\n")
    log.flush()
    t4 = _sync(device)
    assert finite
    return {"data": t1 - t0, "forward_backward": t2 - t1, "optimizer": t3 - t2, "logging": t4 - t3}


def time_loop(trainer: Trainer, steps: int, device: str) -> float:
    """Seconds per step of `steps` steps back to back, as the loop runs them between log intervals:
    no host-device sync inside (the NaN check reads the device only at log steps on CUDA)."""
    window = MetricWindow(trainer.step, trainer.device)
    t0 = _sync(device)
    for _ in range(steps):
        trainer.set_lr()
        trainer.generator.get_state()
        loss = trainer.forward_backward(trainer.draw_batch())
        grad_norm = trainer.clip()
        trainer.optimizer_step()
        trainer.step += 1
        window.add(loss, grad_norm)
    t1 = _sync(device)
    assert bool(window.finite)
    return (t1 - t0) / steps


def peak_flops(args) -> tuple[float | None, str]:
    """Peak FLOP/s for MFU and where the figure comes from."""
    if args.peak_tflops is not None:
        return args.peak_tflops * 1e12, "--peak-tflops"
    return device_peak_flops(args.device)


def device_peak_flops(device: str) -> tuple[float | None, str]:
    """The device's dense bf16 peak FLOP/s from PEAK_BF16_TFLOPS (None on a CPU or a GPU not in it) and its source."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key, tflops in PEAK_BF16_TFLOPS:
            if key in name:
                return tflops * 1e12, f"table: {key} dense bf16"
        return None, f"n/a: {name} not in the table, pass --peak-tflops"
    return None, "n/a: pass --peak-tflops for a CPU"


def report(args, trainer: Trainer, times: dict, loop_seconds: float) -> None:
    mean = {p: statistics.mean(v) for p, v in times.items()}
    step = sum(mean.values())
    tokens = args.batch_size * args.grad_accum * args.context_length
    flops_per_token = 3 * forward_flops(trainer.model_config, args.context_length) / args.context_length
    tokens_per_s = tokens / loop_seconds
    peak, peak_source = peak_flops(args)
    mfu = flops_per_token * tokens_per_s / peak if peak else None
    result = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "grad_accum_steps": args.grad_accum,
        "context_length": args.context_length,
        "autocast": args.autocast,
        "compile": args.compile,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "steps_timed": args.steps,
        "step_ms": round(step * 1e3, 2),
        "tokens_per_s": round(tokens / step, 1),
        "ms": {p: round(m * 1e3, 3) for p, m in mean.items()},
        "percent": {p: round(100 * m / step, 2) for p, m in mean.items()},
        "data_and_logging_percent": round(100 * (mean["data"] + mean["logging"]) / step, 2),
        "outside_forward_backward_percent": round(100 * (step - mean["forward_backward"]) / step, 2),
        "loop_step_ms": round(loop_seconds * 1e3, 2),
        "loop_tokens_per_s": round(tokens_per_s, 1),
        "train_flops_per_token": flops_per_token,
        "peak_tflops": peak / 1e12 if peak else None,
        "peak_source": peak_source,
        "mfu": round(mfu, 4) if mfu is not None else None,
        "tinystories_run_minutes": round(TINYSTORIES_RUN_TOKENS / tokens_per_s / 60, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"TinyStories model ({result['parameters']:,} params), batch {args.batch_size} x {args.context_length} on {result['device_name']}")
    print(f"{'part':<18}{'ms/step':>10}{'share':>9}")
    for p in PARTS:
        print(f"{p:<18}{result['ms'][p]:>10.2f}{result['percent'][p]:>8.2f}%")
    print(f"{'total':<18}{result['step_ms']:>10.2f}")
    print(f"tokens/s: {result['tokens_per_s']:,.0f}   data + logging: {result['data_and_logging_percent']:.2f}% of the step, "
          f"everything but forward/backward: {result['outside_forward_backward_percent']:.2f}%")
    mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a"
    print(f"loop, no per-step sync: {result['loop_step_ms']:.2f} ms/step, {result['loop_tokens_per_s']:,.0f} tokens/s; "
          f"{flops_per_token / 1e6:.1f} MFLOP/token (3 x forward) -> MFU {mfu} ({peak_source}); "
          f"the 327,680,000-token TinyStories run would take {result['tinystories_run_minutes']:,.1f} min")


if __name__ == "__main__":
    main()
