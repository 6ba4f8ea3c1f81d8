"""The TinyStories configuration trained with each recipe on real tokens: tokens/s, MFU, validation loss.

The model of the CS336 TinyStories run (vocab 10,000, context 256, d_model 512, 4 layers, 16 heads,
SwiGLU d_ff 1,344; the recipe may change the feed-forward) is trained by tinylm's own Trainer for the
same number of tokens with each `--recipes` entry, on token files made by `prepare` (BPE-10K trained on
bench_en, encoded, the last `--val-fraction` of documents held out). Reported per recipe:

    tokens/s   training tokens ÷ wall-clock between the first metrics line after 10% of the steps and
               the last (torch.compile and the first steps' warm-up are left out), from metrics.jsonl
    MFU        3 × forward matmul FLOPs per token (tinylm.model.accounting.forward_flops) × tokens/s ÷
               the device's dense bf16 peak (benchmarks/bench_train.py's per-device table)
    val loss / val bits per byte after the token budget (the Trainer's evaluation, `--eval-windows`
               fixed windows of the validation file; bits per byte from each token's exact bytes)

    python benchmarks/bench_tinystories.py prepare --text data/bench_en.txt --out data/tinystories_tokens
    python benchmarks/bench_tinystories.py train --data data/tinystories_tokens --device cuda --compile \\
        --tokens 32768000 --recipes cs336 tinylm --json out/tinystories.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def prepare(text: Path, out: Path, vocab_size: int, val_fraction: float) -> None:
    """BPE-`vocab_size` tokenizer of `text` and its train/val token files (uint16 .npy) in `out`."""
    from tinylm.tokenizer.token_arrays import encode_file
    from tinylm.tokenizer.train import BpeTrainer

    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    trained = BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], progress=False).train(text)
    trained.tokenizer.save_dir(out / "tokenizer")
    print(f"BPE-{vocab_size} on {text}: {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    docs = text.read_text(encoding="utf-8").split("<|endoftext|>")
    cut = len(docs) - max(1, int(len(docs) * val_fraction))
    for name, part in {"train": docs[:cut], "val": docs[cut:]}.items():
        split_text = out / f"{name}.txt"
        split_text.write_text("<|endoftext|>".join(part), encoding="utf-8")
        info = encode_file(trained.tokenizer, split_text, out / f"{name}.npy")
        split_text.unlink()
        print(f"{name}: {info.num_bytes:,} bytes -> {info.num_tokens:,} tokens", flush=True)
    print(f"encoded in {time.perf_counter() - t:.1f} s", flush=True)


def train(args) -> list[dict]:
    import torch

    from bench_train import device_peak_flops
    from tinylm.model.accounting import forward_flops
    from tinylm.model.config import ModelConfig
    from tinylm.recipes import config_overrides
    from tinylm.training.config import TrainConfig
    from tinylm.training.loop import Trainer

    data = Path(args.data)
    results = []
    for recipe in args.recipes:
        out = Path(args.out) / recipe
        steps = args.tokens // (args.batch_size * ModelConfig().context_length)
        config = TrainConfig.from_dict({
            "model": {"compile": args.compile},  # ModelConfig's defaults are the TinyStories model
            "data": {"train": str(data / "train.npy"), "val": str(data / "val.npy")},
            "tokenizer": {"dir": str(data / "tokenizer")},
            "optim": {"lr_max": args.lr, "lr_min": args.lr / 10, "warmup_iters": max(1, steps // 20)},
            "train": {"batch_size": args.batch_size, "max_tokens": args.tokens, "eval_interval": max(1, steps // 4),
                      "eval_windows": args.eval_windows, "log_interval": 10, "checkpoint_interval": 1 << 30,
                      "device": args.device, "seed": args.seed, "out_dir": str(out), "progress": False},
        }).with_overrides(config_overrides(recipe))
        t0 = time.perf_counter()
        trainer = Trainer(config)
        result = trainer.run()
        seconds = time.perf_counter() - t0
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        timed = [r for r in lines if "tokens_per_s" in r and r["step"] >= steps // 10]
        first, last = timed[0], timed[-1]
        tokens_per_s = (last["tokens"] - first["tokens"]) / max(last["wall_clock"] - first["wall_clock"], 1e-9)
        mc = trainer.model_config
        flops_per_token = 3 * forward_flops(mc, mc.context_length) / mc.context_length
        peak, _ = device_peak_flops(args.device)
        r = {
            "recipe": recipe, "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "tokens": trainer.tokens_seen, "steps": result.step,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "seconds_total": round(seconds, 1), "tokens_per_s": round(tokens_per_s),
            "train_flops_per_token": flops_per_token,
            "mfu": round(flops_per_token * tokens_per_s / peak, 4) if peak else None,
            "val_loss": result.val_loss, "val_bpb": result.val_bpb, "train_loss": result.train_loss,
            "curve": [{k: r[k] for k in ("step", "tokens", "wall_clock", "val_loss", "val_bpb")} for r in lines if "val_loss" in r],
        }
        results.append(r)
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{recipe:<8} {r['tokens']:,} tokens in {r['seconds_total']} s (compile included), {r['tokens_per_s']:,} tok/s, "
              f"MFU {mfu}, val loss {r['val_loss']:.4f}, val bits/byte {r['val_bpb']:.4f}", flush=True)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "runs": results}, indent=1))
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="tokenizer and train/val token files")
    p.add_argument("--text", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vocab-size", type=int, default=10_000)
    p.add_argument("--val-fraction", type=float, default=0.02)
    t = sub.add_parser("train", help="train the TinyStories model with each recipe")
    t.add_argument("--data", required=True, help="a `prepare` folder")
    t.add_argument("--out", default=str(ROOT / "runs" / "tinystories"))
    t.add_argument("--recipes", nargs="+", default=["cs336", "tinylm"])
    t.add_argument("--tokens", type=int, default=32_768_000)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-3, help="AdamW peak lr (Muon's is the recipe's muon_lr)")
    t.add_argument("--eval-windows", type=int, default=1024)
    t.add_argument("--device", default="cuda")
    t.add_argument("--compile", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.command == "prepare":
        prepare(Path(args.text), Path(args.out), args.vocab_size, args.val_fraction)
    else:
        train(args)


if __name__ == "__main__":
    main()
