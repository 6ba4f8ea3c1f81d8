"""The benchmark that chooses the default recipe: cs336 vs nanogpt vs tinylm at the same wall-clock.

Each run is the quick start's training stage (tinylm.quickstart.train_model: the quick-start model,
d_model 128, 4 layers, 4 heads, context 128, batch 32, on the bundled corpus's BPE-4096 tokens) for
`--minutes` of wall-clock, scored by the quick start's own evaluation (evaluate_model: validation bits
per byte over up to 131,072 validation tokens). The corpus, tokenizer and token arrays are prepared
once and shared by every run. Runs are interleaved (round r runs every recipe once with seed r, the
order rotated each round) so that a machine shared with others loads every recipe alike; the 1-minute
load average is recorded before and after each run.

`--ablate` adds, for seed 0 only, the tinylm recipe with one part reverted at a time (back to the
cs336 setting), and cs336 with one part added, to show what each part buys.

    .venv/bin/python benchmarks/bench_recipe.py --minutes 1.5 --seeds 0 1 --ablate \
        --out docs/results/bench_recipe_1.5min.json --plot docs/img/recipe_bpb_vs_time_1.5min.png

Prints one line per run and a table; writes every figure (and each run's validation curve) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinylm import recipes  # noqa: E402
from tinylm.quickstart import (  # noqa: E402
    RECIPE_TUNED_FALLBACKS,
    QuickstartConfig,
    encode_splits,
    evaluate_model,
    prepare_corpus,
    train_model,
    train_tokenizer,
)

MAIN_RECIPES = ("cs336", "nanogpt", "tinylm")
# one part of tinylm reverted to cs336's setting at a time (name -> the overrides that stay)
_TINYLM = recipes.RECIPES["tinylm"]
_PARTS = {
    "muon": ("optim.name", "optim.muon_lr", "optim.muon_momentum"),
    "embedding_lr": ("optim.embedding_lr",),
    "wsd": ("optim.schedule", "optim.decay_fraction"),
    "zero_init": ("model.zero_init_residual",),
    "lr": ("quickstart.lr",),
    "no_weight_decay": ("quickstart.weight_decay",),
    "no_warmup": ("quickstart.warmup_fraction",),
    "beta1": ("optim.beta1",),
    "depth": ("quickstart.num_layers",),
}


def ablation_recipes() -> dict[str, dict]:
    """'tinylm - part' (the part reverted) and 'cs336 + part' (only that part) for each part."""
    out = {}
    for part, keys in _PARTS.items():
        out[f"tinylm-no-{part}"] = {k: v for k, v in _TINYLM.items() if k not in keys}
        out[f"cs336+{part}"] = {k: v for k, v in _TINYLM.items() if k in keys}
    return out


def prepare(work: Path, seed: int = 0, vocab_size: int | None = None) -> QuickstartConfig:
    """Corpus split, tokenizer and token arrays in `work` (once for all runs); vocab_size None: the quick start's."""
    config = QuickstartConfig(out_dir=str(work), seed=seed, progress=False, **({"vocab_size": vocab_size} if vocab_size else {}))
    if not (work / "train.npy").exists():
        prepare_corpus(config, work)
        tokenizer, _ = train_tokenizer(config, work, progress=False)
        encode_splits(config, work, tokenizer, progress=False)
    return config


def quickstart_config(base: QuickstartConfig, recipe: str, **changes) -> QuickstartConfig:
    """`base` under `recipe`, with `changes`: the fields a recipe tunes (lr, batch size) are taken
    afresh from the recipe (`quickstart.*` keys, e.g. a variant's quickstart.batch_size=16); a tuning
    variant's other `quickstart.*` keys (e.g. quickstart.d_model=96) are set as they are."""
    retuned = dict.fromkeys(RECIPE_TUNED_FALLBACKS)
    shape = {k: v for k, v in recipes.quickstart_defaults(recipe).items() if k not in RECIPE_TUNED_FALLBACKS}
    return QuickstartConfig(**{**base.to_dict(), **retuned, "recipe": recipe, **shape, **changes})


def run_one(base: QuickstartConfig, recipe: str, seed: int, minutes: float, work: Path, max_steps: int | None = None) -> dict:
    """One training run of `recipe` at `minutes` (or `max_steps`), evaluated as the quick start does."""
    config = quickstart_config(base, recipe, seed=seed, minutes=minutes, max_steps=max_steps)
    load_before = os.getloadavg()[0]
    trainer, summary = train_model(config, work, progress=False)
    ev = evaluate_model(trainer, config, progress=False)
    curve = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    return {
        "recipe": recipe, "seed": seed, "minutes": minutes, "max_steps": max_steps, "seconds": summary["seconds"],
        "val_bpb": ev["val_bpb"], "val_loss": ev["val_loss"],
        "steps": summary["steps"], "tokens_per_s": summary["tokens_per_s"],
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "curve": [{"wall_clock": r["wall_clock"], "val_bpb": r["val_bpb"]} for r in curve if "val_bpb" in r],
    }


def parse_cpus(spec: str | None) -> list[int]:
    """'8-15' or '2,3,5' (or None: every CPU this process may use) -> sorted CPU numbers."""
    if spec is None:
        return sorted(os.sched_getaffinity(0))
    cpus = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return sorted(cpus)


def run_parallel(schedule: list[tuple[str, int]], args, work: Path):
    """Yield run_one's result of each (recipe, seed), `args.parallel` at a time, each in a child process
    pinned to one CPU of `args.cpus` and working in its own folder (the prepared files linked in)."""
    import subprocess

    cpus = parse_cpus(args.cpus)
    if len(cpus) < args.parallel:
        raise SystemExit(f"--parallel {args.parallel} needs as many CPUs, --cpus gives {len(cpus)}")
    shared = [p for p in work.iterdir() if p.name != "run" and not p.name.startswith("job-")]
    pending, running, free = list(schedule), [], cpus[: args.parallel]
    while pending or running:
        while pending and free:
            name, seed = pending.pop(0)
            job = work / f"job-{name}-{seed}"
            shutil.rmtree(job, ignore_errors=True)
            job.mkdir()
            for p in shared:
                (job / p.name).symlink_to(p.resolve())
            cpu = free.pop(0)
            cmd = [sys.executable, __file__, "--child", name, str(seed), "--work", str(job), "--minutes", str(args.minutes),
                   "--threads", str(args.threads)] + [f"--variant={v}" for v in args.variant] + (["--max-steps", str(args.max_steps)] if args.max_steps else []) \
                + (["--vocab-size", str(args.vocab_size)] if args.vocab_size else [])
            proc = subprocess.Popen(cmd, preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu}))
            running.append((proc, job, cpu))
        time.sleep(1)
        for item in [x for x in running if x[0].poll() is not None]:
            proc, job, cpu = item
            running.remove(item)
            free.append(cpu)
            if proc.returncode != 0:
                raise SystemExit(f"run {job.name} failed (exit {proc.returncode})")
            r = json.loads((job / "result.json").read_text())
            r["cpu"] = cpu
            shutil.rmtree(job, ignore_errors=True)
            yield r


def recipe_step_seconds(names: list[str], base: QuickstartConfig, rounds: int = 3, steps: int = 8) -> dict:
    """Median seconds per training step (forward, backward, clipping, the recipe's optimizer) of the
    quick-start model under each recipe, on random tokens; the recipes take turns each round, so a
    changing load hits them alike, and the ratios to cs336 hold on a loaded machine (equal-step runs of
    `steps_for_equal_time` then stand in for equal wall-clock runs, whatever the load)."""
    import tempfile

    import numpy as np

    from tinylm.training.config import TrainConfig
    from tinylm.training.loop import MetricWindow, Trainer

    tmp = Path(tempfile.mkdtemp())
    np.save(tmp / "t.npy", np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint16))
    trainers, times = {}, {n: [] for n in names}
    for name in names:
        qc = quickstart_config(base, name)
        cfg = TrainConfig(model=qc.model_config()).to_dict()
        cfg["data"] = {"train": str(tmp / "t.npy")}
        cfg["train"] = {"batch_size": qc.batch_size, "max_steps": 10**6, "device": "cpu", "out_dir": str(tmp / name), "progress": False}
        trainer = Trainer(TrainConfig.from_dict(cfg).with_overrides(qc.optim_overrides()))
        trainer._window = MetricWindow(0, trainer.device)
        trainer._train_step(None)  # first step: allocation, optimizer state
        trainers[name] = trainer
    for _ in range(rounds):
        for name, trainer in trainers.items():
            t = time.perf_counter()
            for _ in range(steps):
                trainer._train_step(None)
            times[name].append((time.perf_counter() - t) / steps)
    shutil.rmtree(tmp, ignore_errors=True)
    return {n: statistics.median(v) for n, v in times.items()}


def measure_speed(repeats: int = 5, steps: int = 4) -> dict:
    """Seconds per training step (forward, backward, AdamW) of the quick-start model with batch 32 on
    the CPU: float32, bf16 autocast, and torch.compile (compiled once, before timing). The variants
    take turns (`repeats` rounds of `steps` steps each), so a changing load hits all of them alike;
    medians of the per-round means, and the compile time, are reported."""
    import torch

    from tinylm.model import ModelConfig, TransformerLM
    from tinylm.training.optim import AdamW

    variants = {"float32": {"autocast": "none"}, "bf16 autocast": {"autocast": "bf16"},
                "torch.compile": {"autocast": "none", "compile": True}}
    base = QuickstartConfig().model_config()
    x = torch.randint(0, base.vocab_size, (32, base.context_length), generator=torch.Generator().manual_seed(0))
    setups, out = {}, {}
    for name, changes in variants.items():
        torch.manual_seed(0)
        model = TransformerLM(base.replace(**changes))
        opt = AdamW(model.parameters(), lr=1e-4)
        t = time.perf_counter()
        try:
            _train_steps(model, opt, x, 2)  # warm-up (and compilation)
        except Exception as exc:  # torch.compile needs a working C++ toolchain
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            continue
        out[name] = {"first_steps_seconds": time.perf_counter() - t, "rounds": []}
        setups[name] = (model, opt)
    for _ in range(repeats):
        for name, (model, opt) in setups.items():
            t = time.perf_counter()
            _train_steps(model, opt, x, steps)
            out[name]["rounds"].append((time.perf_counter() - t) / steps)
    for name in setups:
        out[name]["median_step_seconds"] = statistics.median(out[name]["rounds"])
    ref = out.get("float32", {}).get("median_step_seconds")
    for name in setups:
        out[name]["speedup_vs_float32"] = ref / out[name]["median_step_seconds"] if ref else None
    out["threads"] = torch.get_num_threads()
    out["load_average"] = os.getloadavg()
    return out


def _train_steps(model, opt, x, steps: int) -> None:
    from tinylm.training.optim import cross_entropy

    for _ in range(steps):
        cross_entropy(model(x), x).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"cs336": "tab:blue", "nanogpt": "tab:orange", "tinylm": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        if r["recipe"] not in colours or not r["curve"]:
            continue
        xs = [p["wall_clock"] / 60 for p in r["curve"]]
        ys = [p["val_bpb"] for p in r["curve"]]
        ax.plot(xs, ys, color=colours[r["recipe"]], linestyle="-" if r["seed"] == 0 else "--",
                label=f"{r['recipe']} seed {r['seed']}")
    ax.set_xlabel("training wall-clock (minutes)")
    ax.set_ylabel("validation bits per byte")
    ax.set_ylim(top=min(ax.get_ylim()[1], 4.0))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("quick-start model on the bundled corpus, same wall-clock budget")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def table(results: list[dict]) -> str:
    """Median over seeds of bits/byte and tokens/s per recipe, with the change against cs336."""
    by = {}
    for r in results:
        by.setdefault(r["recipe"], []).append(r)
    base = statistics.median(r["val_bpb"] for r in by.get("cs336", [])) if "cs336" in by else None
    lines = ["| recipe | seeds | val bits/byte (per seed) | median | vs cs336 | tokens/s (median) |", "|---|---|---|---|---|---|"]
    for name, rs in by.items():
        med = statistics.median(r["val_bpb"] for r in rs)
        change = f"{(med / base - 1) * 100:+.1f}%" if base else ""
        per_seed = ", ".join(f"{r['val_bpb']:.4f}" for r in sorted(rs, key=lambda r: r["seed"]))
        tps = statistics.median(r["tokens_per_s"] for r in rs)
        lines.append(f"| {name} | {len(rs)} | {per_seed} | {med:.4f} | {change} | {tps:,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipes", nargs="+", default=list(MAIN_RECIPES))
    parser.add_argument("--ablate", action="store_true", help="also the one-part-changed variants (seed 0)")
    parser.add_argument("--only-ablations", action="store_true",
                        help="only the ablations, with cs336 and tinylm (seed 0) run in the same stream as references")
    parser.add_argument("--no-references", action="store_true",
                        help="with --only-ablations: leave out the cs336 and tinylm reference runs (already run elsewhere)")
    parser.add_argument("--removals-only", action="store_true", help="ablations: only 'tinylm-no-<part>'")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="train this many steps instead of --minutes (bits/byte at equal steps: independent of the load)")
    parser.add_argument("--speed", action="store_true",
                        help="only measure seconds per training step of the quick-start model: float32, bf16 autocast, torch.compile")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, loaded 2-core machine 1 thread ran a step 4x faster than 2)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="runs at once, each a process pinned to its own CPU (of --cpus) with --threads threads: "
                             "every run sees the same machine at the same time (use on a machine with cores to spare)")
    parser.add_argument("--cpus", default=None, help="CPUs for --parallel runs, e.g. 8-15 or 2,3,5 (default: all)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=BASE:KEY=VALUE,...",
                        help="also run a recipe NAME made of recipe BASE with these overrides, e.g. "
                             "'tl-muon05=tinylm:optim.muon_lr=0.05' (repeatable; for tuning)")
    parser.add_argument("--step-seconds", action="store_true",
                        help="only measure each --recipes' seconds per training step (interleaved), to size equal-time step budgets")
    parser.add_argument("--child", nargs=2, metavar=("RECIPE", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--work", default=str(ROOT / "data" / "bench_recipe"))
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="the BPE vocabulary trained for (and used by) every run (default: the quick start's); "
                             "use a --work folder of its own for each")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "bench_recipe.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "img" / "recipe_bpb_vs_time.png"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.speed:
        return print(json.dumps(measure_speed(), indent=1))
    for name, overrides in ablation_recipes().items():
        recipes.RECIPES.setdefault(name, overrides)  # registered for this process (and its --parallel children) only
    for spec in args.variant:
        name, base_and_sets = spec.split("=", 1)
        base_name, _, sets = base_and_sets.partition(":")
        overrides = dict(recipes.RECIPES[base_name])
        for item in filter(None, sets.split(",")):
            key, value = item.split("=", 1)
            try:
                overrides[key] = json.loads(value)  # numbers, true/false
            except ValueError:
                overrides[key] = value  # a bare string, e.g. optim.schedule=wsd
        recipes.RECIPES[name] = overrides
        if name not in args.recipes:
            args.recipes.append(name)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = prepare(work, vocab_size=args.vocab_size)
    if args.step_seconds:
        secs = recipe_step_seconds(args.recipes, base)
        ref = secs.get("cs336")
        for name, sec in secs.items():
            print(f"{name:<22} {sec:.3f} s/step" + (f"  {sec / ref:.3f}x cs336" if ref else ""))
        return
    if args.child:  # one run of a --parallel benchmark, in its own process and folder
        r = run_one(base, args.child[0], int(args.child[1]), args.minutes, work, args.max_steps)
        (work / "result.json").write_text(json.dumps(r))
        return
    schedule = []
    if not args.only_ablations:
        for i, seed in enumerate(args.seeds):  # rotate the order each round
            k = i % len(args.recipes)
            schedule += [(name, seed) for name in args.recipes[k:] + args.recipes[:k]]
    if args.only_ablations and not args.no_references:
        schedule += [("cs336", args.seeds[0]), ("tinylm", args.seeds[0])]
    if args.ablate or args.only_ablations:
        for name in ablation_recipes():
            if not (args.removals_only and not name.startswith("tinylm-no-")):
                schedule.append((name, args.seeds[0]))
    out = Path(args.out)
    results = json.loads(out.read_text())["runs"] if out.exists() else []
    t0 = time.time()
    runs = run_parallel(schedule, args, work) if args.parallel > 1 else (
        run_one(base, name, seed, args.minutes, work, args.max_steps) for name, seed in schedule)
    for r in runs:
        results.append(r)
        print(f"{r['recipe']:<22} seed {r['seed']}  {r['val_bpb']:.4f} bits/byte  {r['steps']:>5} steps  "
              f"{r['tokens_per_s']:>8,.0f} tok/s  load {r['load_before']:.1f}->{r['load_after']:.1f}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": " ".join(sys.argv), "cpus": os.cpu_count(), "threads": args.threads,
                                   "parallel": args.parallel, "runs": results}, indent=1))
    shutil.rmtree(work / "run", ignore_errors=True)
    print(table(results))
    print(f"({(time.time() - t0) / 60:.1f} min in all)")
    if args.plot:
        plot(results, Path(args.plot))


if __name__ == "__main__":
    main()
