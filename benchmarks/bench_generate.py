"""Generation tokens/s with and without the KV cache, with the context filled to 256 and 1,024 tokens.

    python benchmarks/bench_generate.py                        # CPU (1 thread), TinyStories model, contexts 256 and 1024
    python benchmarks/bench_generate.py --contexts 256 --new-tokens 32 --repeats 1   # a quick look
    python benchmarks/bench_generate.py --device cuda --batch-size 8

What is timed: one `generate_ids` / `generate_batch` call, greedy, from a prompt of
(context - new_tokens) random ids to `new_tokens` new ones, so the last steps see the full context.
The call includes the prompt's forward pass (the cache's "prefill"): tokens/s = new tokens (× batch)
/ wall-clock of the whole call, what a user waits for. The prefill is also timed on its own, and
decode tokens/s (new tokens after the first / time after the prefill) shows the steady rate.
Cached and recomputed runs are interleaved, repeat by repeat, so drift in the machine's load hits
both alike; medians are reported, with process CPU time (steadier on a shared machine) beside
wall-clock. Both runs must produce the same tokens (checked), or the comparison means nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from tinylm.generate import generate_batch
from tinylm.model import KVCache, TransformerLM
from tinylm.model.accounting import preset


def timed(fn, sync) -> tuple[float, float, object]:
    """(wall s, process CPU s, result) of fn()."""
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0, result


def prefill_seconds(model: TransformerLM, prompts: torch.Tensor, sync) -> float:
    """Wall-clock of the prompt's forward pass into an empty cache."""
    with torch.no_grad():
        wall, _, _ = timed(lambda: model(prompts, kv_cache=KVCache.for_model(model.config)), sync)
    return wall


def measure(model: TransformerLM, context: int, new_tokens: int, batch: int, repeats: int, sync) -> dict:
    gen = torch.Generator().manual_seed(context)
    prompts = torch.randint(0, model.config.vocab_size, (batch, context - new_tokens), generator=gen)
    device = next(model.parameters()).device
    prompt_lists = prompts.tolist()
    # the rows share their length, so generate_batch decodes them as one batch
    run = {name: (lambda use_cache=use_cache: generate_batch(model, prompt_lists, new_tokens, temperature=0, use_cache=use_cache))
           for name, use_cache in (("cache", True), ("no cache", False))}
    outputs = {name: fn() for name, fn in run.items()}  # warm-up, and the tokens to compare
    same = outputs["cache"] == outputs["no cache"]
    wall = {name: [] for name in run}
    cpu = {name: [] for name in run}
    prefill = []
    for _ in range(repeats):
        for name, fn in run.items():
            w, c, _ = timed(fn, sync)
            wall[name].append(w)
            cpu[name].append(c)
        prefill.append(prefill_seconds(model, prompts.to(device), sync))
    tokens = new_tokens * batch
    result = {"context": context, "prompt_tokens": context - new_tokens, "new_tokens": new_tokens, "batch": batch,
              "same_tokens": same, "prefill_s": statistics.median(prefill)}
    for name in run:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        result[name] = {"wall_s": w, "cpu_s": c, "tokens_per_s": tokens / w,
                        "decode_tokens_per_s": (tokens - batch) / max(w - result["prefill_s"], 1e-9) if name == "cache" else None}
    result["speedup"] = result["no cache"]["wall_s"] / result["cache"]["wall_s"]
    result["speedup_cpu_time"] = result["no cache"]["cpu_s"] / result["cache"]["cpu_s"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="tinystories", help="model shape (tinylm accounting --help lists them)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=INT",
                    help="change a ModelConfig integer field of the preset, e.g. --set d_model=64 (repeatable)")
    ap.add_argument("--contexts", default="256,1024", help="comma-separated context lengths")
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens generated per call (the prompt fills the rest)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per variant (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: on a shared machine, contended OpenMP threads slow small steps 10-20x)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    overrides = {key: int(value) for key, value in (item.split("=", 1) for item in args.overrides)}
    load_before = os.getloadavg()
    results = []
    for context in (int(c) for c in args.contexts.split(",")):
        torch.manual_seed(0)
        config = preset(args.preset).replace(**overrides, context_length=context)
        model = TransformerLM(config).to(args.device).eval()
        results.append(measure(model, context, args.new_tokens, args.batch_size, args.repeats, sync))
    load_after = os.getloadavg()

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} threads"
    params = sum(p.numel() for p in model.parameters())
    shape = args.preset + "".join(f", {k}={v}" for k, v in overrides.items())
    print(f"{shape} model ({params:,} params, fast path), greedy, batch {args.batch_size}, {device}, "
          f"torch {torch.__version__}, median of {args.repeats}; load average (1 min) {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after\n")
    print("| context | prompt + new | no cache tokens/s | cache tokens/s | speedup (wall) | speedup (CPU time) "
          "| cache prefill s | cache decode tokens/s | same tokens |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['context']:,} | {r['prompt_tokens']:,} + {r['new_tokens']} | {r['no cache']['tokens_per_s']:,.1f} "
              f"| {r['cache']['tokens_per_s']:,.1f} | {r['speedup']:.1f}× | {r['speedup_cpu_time']:.1f}× "
              f"| {r['prefill_s']:.3f} | {r['cache']['decode_tokens_per_s']:,.1f} | {'yes' if r['same_tokens'] else 'no'} |")
    if args.json:
        print(json.dumps({"device": device, "load_average": [load_before, load_after], "results": results}))


if __name__ == "__main__":
    main()
