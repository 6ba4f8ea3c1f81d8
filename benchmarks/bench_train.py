"""Training throughput of the TinyStories model, with each step split into its parts.

Runs the trainer's own step pieces (tinylm.training.loop.Trainer) on a synthetic token file and
times data loading, forward+backward, optimizer (clipping + AdamW) and logging separately, with a
device sync between parts on CUDA so each part is charged its own time. The point: everything but
the model's compute should be a few percent of a step.

    python benchmarks/bench_train.py                         # CPU, small batch
    python benchmarks/bench_train.py --device cuda --batch-size 64 --steps 30
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

from tinylm.training.config import TrainConfig
from tinylm.training.loop import Trainer, MetricWindow

TINYSTORIES = dict(vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344, rope_theta=10_000.0)
PARTS = ("data", "forward_backward", "optimizer", "logging")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--context-length", type=int, default=TINYSTORIES["context_length"])
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after --warmup untimed ones)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--autocast", default="auto", choices=["auto", "bf16", "none"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
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
            "train": {"batch_size": args.batch_size, "max_steps": 1000, "device": args.device, "out_dir": str(Path(tmp) / "run"), "progress": False},
        })
        trainer = Trainer(config)
        times = {p: [] for p in PARTS}
        with open(Path(tmp) / "metrics.jsonl", "w") as log:
            for i in range(args.warmup + args.steps):
                step_times = time_step(trainer, log, args.device)
                if i >= args.warmup:
                    for p in PARTS:
                        times[p].append(step_times[p])
    report(args, trainer, times)


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
    inputs, targets = trainer.draw_batch()
    t1 = _sync(device)
    loss = trainer.forward_backward(inputs, targets)
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


def report(args, trainer: Trainer, times: dict) -> None:
    mean = {p: statistics.mean(v) for p, v in times.items()}
    step = sum(mean.values())
    tokens = args.batch_size * args.context_length
    result = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "context_length": args.context_length,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "steps_timed": args.steps,
        "step_ms": round(step * 1e3, 2),
        "tokens_per_s": round(tokens / step, 1),
        "ms": {p: round(m * 1e3, 3) for p, m in mean.items()},
        "percent": {p: round(100 * m / step, 2) for p, m in mean.items()},
        "data_and_logging_percent": round(100 * (mean["data"] + mean["logging"]) / step, 2),
        "outside_forward_backward_percent": round(100 * (step - mean["forward_backward"]) / step, 2),
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


if __name__ == "__main__":
    main()
