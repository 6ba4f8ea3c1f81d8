"""`tinylm train`, `tinylm generate`, `tinylm sweep`: parse flags, call tinylm.training, print.

The library work lives in tinylm.training (loop, config), tinylm.generate and tinylm.experiments.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from tinylm.recipes import RECIPES

# flag name -> config key; every one of these is also reachable as --set section.key=value
_TRAIN_FLAGS = {
    "out": "train.out_dir",
    "train_data": "data.train",
    "val_data": "data.val",
    "tokenizer": "tokenizer.dir",
    "batch_size": "train.batch_size",
    "grad_accum_steps": "train.grad_accum_steps",
    "global_batch_size": "train.global_batch_size",
    "max_steps": "train.max_steps",
    "max_tokens": "train.max_tokens",
    "max_minutes": "train.max_minutes",
    "lr": "optim.lr_max",
    "lr_min": "optim.lr_min",
    "warmup_iters": "optim.warmup_iters",
    "eval_interval": "train.eval_interval",
    "checkpoint_interval": "train.checkpoint_interval",
    "device": "train.device",
    "seed": "train.seed",
    "wandb": "train.wandb",
    "progress": "train.progress",
}
_DTYPES = {"float32": "none", "bfloat16": "bf16", "auto": "auto"}


def _config_options(func):
    """--config and --set, shared by `train` and the sweeps."""
    func = click.option(
        "--set", "settings", multiple=True, metavar="SECTION.KEY=VALUE",
        help="Any config setting, e.g. --set model.d_model=256 --set optim.beta2=0.99 (repeatable).",
    )(func)
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file (see docs).")(func)


def _load(config_path, settings, flags: dict):
    """The config file, then the --recipe's settings, then the flags and --set (later ones win)."""
    from tinylm.recipes import config_overrides
    from tinylm.training.config import load_config, split_override

    overrides = config_overrides(flags["recipe"]) if flags.get("recipe") else {}
    for name, key in _TRAIN_FLAGS.items():
        if flags.get(name) is not None:
            overrides[key] = flags[name]
    if flags.get("dtype") is not None:
        overrides["model.autocast"] = _DTYPES[flags["dtype"]]
    for item in settings:
        key, value = split_override(item)
        overrides[key] = value
    return load_config(config_path, overrides)


def _resume_command(result) -> str:
    """How to continue a stopped run: the same launch shape it had (any other works too)."""
    if result.world_size <= 1:
        return f"tinylm train --resume {result.out_dir}"
    nodes = max(1, result.world_size // max(1, result.local_world_size))
    if nodes == 1:
        launch = f"torchrun --standalone --nproc_per_node {result.world_size}"
    else:
        launch = (f"torchrun --nnodes {nodes} --nproc_per_node {result.local_world_size} "
                  "--rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID")
    return f"{launch} -m tinylm train --resume {result.out_dir} (or on any other number of processes)"


@click.command()
@_config_options
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue the run in this folder from its checkpoint.")
@click.option("--out", help="Run folder for checkpoint, metrics and plots (train.out_dir).")
@click.option("--train-data", help="Training token file (.npy, or .bin of uint16).")
@click.option("--val-data", help="Validation token file, evaluated every --eval-interval steps and at the end.")
@click.option("--tokenizer", help="Tokenizer folder from `tinylm train-bpe` (saved into the run folder for `tinylm generate`).")
@click.option("--batch-size", type=int, help="Sequences per micro-batch, per process.")
@click.option("--grad-accum-steps", type=int, help="Micro-batches per optimizer step, per process.")
@click.option("--global-batch-size", type=int, help="Sequences per step over all processes (sets --grad-accum-steps).")
@click.option("--max-steps", type=int, help="Steps to train (replaces a token budget).")
@click.option("--max-tokens", type=int, help="Token budget, cumulative across resumes (replaces a step budget).")
@click.option("--max-minutes", type=float, help="Wall-clock budget in minutes; the cosine runs over elapsed time.")
@click.option("--lr", type=float, help="Peak learning rate (optim.lr_max).")
@click.option("--lr-min", type=float, help="Final learning rate after the cosine decay.")
@click.option("--warmup-iters", type=int, help="Linear warm-up steps.")
@click.option("--eval-interval", type=int, help="Steps between validation evaluations.")
@click.option("--checkpoint-interval", type=int, help="Steps between checkpoints (one is always written at the end).")
@click.option("--device", help="cpu, cuda, cuda:N or mps.")
@click.option("--dtype", type=click.Choice(list(_DTYPES)), help="float32, bfloat16 (autocast), or auto (bf16 on CUDA only).")
@click.option("--seed", type=int, help="Seed for initialisation and batch sampling.")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=None,
              help="Named recipe (tinylm, cs336, nanogpt) applied before the flags and --set; without it the config's own settings (cs336's). See docs/EXPERIMENTS.md §8.")
@click.option("--wandb/--no-wandb", default=None, help="Also log to Weights & Biases (needs `pip install wandb`).")
@click.option("--progress/--no-progress", default=None, help="Show the progress bar (default on).")
def train(config_path, settings, resume_dir, **flags):
    """Train a Transformer LM on token files; writes checkpoint.pt, metrics.jsonl and loss curves.

    \b
    Examples:
      tinylm train --config cfg.toml --lr 3e-3 --max-steps 2000 --out runs/fast
      tinylm train --resume runs/fast          (continue after Ctrl-C, a crash or kill -9)
      torchrun --nproc_per_node 4 -m tinylm train --config cfg.toml --device cuda   (4 GPUs, DDP)
    """
    from tinylm.training.loop import train as run_training
    from tinylm.training.run_dir import RunDir

    if resume_dir is not None:
        if config_path is not None:
            raise click.UsageError("--resume uses the run's own config.toml; change settings with flags or --set")
        config_path = RunDir(resume_dir).config
        flags["out"] = resume_dir
    config = _load(config_path, settings, flags)
    result = run_training(config, resume=resume_dir is not None)
    out = result.out_dir
    if result.interrupted and result.world_size > 1:
        # This worker is about to exit: a copy of the signal forwarded by the launcher must not turn
        # into a KeyboardInterrupt inside the interpreter's teardown (seen as a C++ abort at exit).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if result.rank != 0:  # under torchrun, rank 0 reports for the run
        sys.exit(130 if result.interrupted else 0)
    if result.interrupted:
        click.echo(f"stopped at step {result.step}; checkpoint saved in {RunDir(out).checkpoint}", err=True)
        click.echo(f"continue with: {_resume_command(result)}", err=True)
        sys.exit(130)
    parts = [f"trained {result.step} steps"]
    if result.train_loss is not None:
        parts.append(f"train loss {result.train_loss:.4f}")
    if result.val_loss is not None:
        parts.append(f"val loss {result.val_loss:.4f}")
    if result.val_bpb is not None:
        parts.append(f"val {result.val_bpb:.4f} bits/byte")
    click.echo(", ".join(parts))
    click.echo(f"run folder: {out} (checkpoint.pt, metrics.jsonl, loss_vs_step.png, loss_vs_time.png)")


@click.command()
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(exists=True), help="Run folder (or its checkpoint.pt).")
@click.option("--prompt", required=True, help="Text to continue. Special tokens in it are refused unless --allow-special.")
@click.option("--max-new-tokens", type=click.IntRange(min=0), default=256, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Finite, >= 0; 0 = greedy (a tiny value is its limit).")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="Nucleus sampling mass, in (0, 1].")
@click.option("--seed", type=int, default=None, help="Seed for sampling (same seed, same text).")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True,
              help="Continuations of the prompt, decoded together as one batch.")
@click.option("--cache/--no-cache", "use_cache", default=True, show_default=True,
              help="Keep keys and values between steps (--no-cache recomputes every step: same tokens, slower).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--allow-special", is_flag=True, help="Let special tokens written in the prompt act as special tokens.")
def generate(checkpoint, prompt, max_new_tokens, temperature, top_p, seed, num_samples, use_cache, device, allow_special):
    """Continue a prompt with a trained model, streaming text as it is produced; stops at <|endoftext|>.

    The tokenizer is the one `tinylm train` saved into the run folder (vocab.json, merges.txt,
    special_tokens.json). With --num-samples N > 1 the N continuations are printed one after the
    other once all are done, each under a `--- sample i/N ---` line.
    """
    from tinylm.errors import SpecialTokenNotAllowedError
    from tinylm.generate import check_sampling, generate_samples, load_run, stream

    check_sampling(temperature, top_p)  # before loading the model: a bad flag costs nothing
    model, tokenizer = load_run(checkpoint, device)
    if not allow_special:  # refuse before printing anything, with the flag's name rather than the API's
        try:
            tokenizer.encode(prompt, allowed_special=set(), disallowed_special="all")
        except SpecialTokenNotAllowedError as exc:
            raise SpecialTokenNotAllowedError(
                f"{str(exc).split(';')[0]} of the prompt; pass --allow-special to let it act as one"
            ) from None
    if num_samples > 1:
        texts = generate_samples(model, tokenizer, prompt, num_samples, max_new_tokens, temperature, top_p, seed,
                                 allow_special, use_cache)
        for i, text in enumerate(texts, 1):
            click.echo(f"--- sample {i}/{num_samples} ---")
            click.echo(prompt + text)
        return
    pieces = stream(model, tokenizer, prompt, max_new_tokens, temperature, top_p, seed, allow_special, use_cache)
    click.echo(prompt, nl=False)
    for piece in pieces:
        click.echo(piece, nl=False)
        sys.stdout.flush()
    click.echo()


@click.group()
def sweep():
    """Experiments: learning-rate and batch-size sweeps, ablations, the toy SGD study.

    Each sweep writes one run folder per setting, curves.png (all runs side by side) and
    summary.md (final losses) under --out.
    """


def _floats(text):
    return [float(v) for v in text.split(",") if v.strip()]


def _print_runs(sweep_fn, *args):
    """Run a sweep and print its table; on Ctrl-C say how to continue it."""
    from tinylm.experiments import summary_table

    out = args[-1]
    try:
        runs = sweep_fn(*args)
    except KeyboardInterrupt as exc:
        if exc.args:
            click.echo(exc.args[0], err=True)
        raise
    click.echo(summary_table(runs))
    for r in runs:
        if r.diverged:
            click.echo(f"{r.label}: {r.status}")
    click.echo(f"curves: {Path(out) / 'curves.png'}; table: {Path(out) / 'summary.md'}")


@sweep.command("lr")
@_config_options
@click.option("--lrs", required=True, help="Comma-separated peak learning rates; include one large enough to diverge.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the sweep's runs and plot.")
def sweep_lr(config_path, settings, lrs, out):
    """One run per peak learning rate; diverging runs are detected and reported.

    Running the same command again continues an interrupted sweep and keeps finished runs.
    """
    from tinylm.experiments import lr_sweep

    _print_runs(lr_sweep, _load(config_path, settings, {}), _floats(lrs), out)


@sweep.command("batch")
@_config_options
@click.option("--sizes", required=True, help="Comma-separated batch sizes, e.g. 1,8,32,128.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def sweep_batch(config_path, settings, sizes, out):
    """One run per batch size, all on the base config's token budget."""
    from tinylm.experiments import batch_sweep

    _print_runs(batch_sweep, _load(config_path, settings, {}), [int(v) for v in _floats(sizes)], out)


@sweep.command("ablations")
@_config_options
@click.option("--out", required=True, type=click.Path(file_okay=False))
def sweep_ablations(config_path, settings, out):
    """Baseline vs no RMSNorm, post-norm, NoPE and SiLU FFN (same data, steps and learning rate)."""
    from tinylm.experiments import ablation_sweep

    _print_runs(ablation_sweep, _load(config_path, settings, {}), out)


@sweep.command("toy-sgd")
@click.option("--lrs", default="10,100,1000", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def sweep_toy_sgd(lrs, steps, seed):
    """SGD with lr/sqrt(t+1) on mean(W²), W 10×10 at 5·N(0,1): prints the loss per step for each lr."""
    from tinylm.experiments import format_toy_sgd, toy_sgd_study

    click.echo(format_toy_sgd(toy_sgd_study(_floats(lrs), steps, seed)))


COMMANDS = [train, generate, sweep]
