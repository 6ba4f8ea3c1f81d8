"""`tinylm quickstart`: raw text to a model that writes, in one call, offline, within a time budget.

Stages (each prints a progress bar while it runs and one summary line when it ends):

1. corpus    extract the bundled public-domain corpus (or read `corpus`), split it into train and
             validation documents (every 20th document goes to validation)
2. tokenizer train a byte-level BPE tokenizer (a few thousand tokens) on the training split
3. encode    encode train and validation to uint16 token arrays, both at once
4. train     train a small Transformer LM for `minutes` of wall-clock: the step count is calibrated
             from measured step times so that the cosine schedule completes inside the budget, and
             re-estimated early in the run; a hard stop at the budget guards against a slower machine
5. evaluate  validation loss per token and bits per byte over (up to `eval_tokens` of) the
             validation split, in non-overlapping windows
6. samples   continuations of fixed prompts
7. report    `report.json` and a self-contained `report.html` (see tinylm.report_html)

Everything lands in `out_dir`: corpus splits, `tokenizer/`, token arrays, the run folder `run/`
(checkpoint, metrics, curves: `tinylm generate --checkpoint <out>/run` works on it), the reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tinylm.data import DOC_SEPARATOR
from tinylm.errors import ConfigError, InputFileError

DEFAULT_PROMPTS = (
    "Once upon a time",
    "It is a truth universally acknowledged",
    "And the LORD said unto",
    "Fellow-Citizens of the Senate and House of Representatives:",
    "My lord, I",
)


@dataclass
class QuickstartConfig:
    """Everything one quick-start run depends on (saved, resolved, in report.json and report.html)."""

    corpus: str | None = None  # a text file with documents separated by <|endoftext|>; None: the bundled corpus
    out_dir: str = "runs/quickstart"
    minutes: float = 7.5  # wall-clock budget for the training stage (the other stages take about a minute)
    max_corpus_mb: float = 64.0  # read at most this much of `corpus` (cut at a document boundary)
    val_every: int = 20  # every val_every-th document is validation
    # tokenizer
    vocab_size: int = 4096
    # model
    context_length: int = 128
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    d_ff: int | None = None  # None: the SwiGLU default (8/3 d_model, rounded to 64)
    # optimisation
    batch_size: int = 32
    lr: float = 1e-2
    lr_min_ratio: float = 0.1
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    max_steps: int | None = None  # set to train a fixed number of steps instead of a time budget
    # evaluation and sampling
    eval_tokens: int = 131_072
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    max_new_tokens: int = 60
    temperature: float = 0.8
    top_p: float = 0.95
    # machine
    device: str = "cpu"
    seed: int = 0
    workers: int | None = None
    progress: bool | None = None  # None: progress bars when stderr is a terminal

    def validate(self) -> None:
        if self.corpus is not None and not Path(self.corpus).is_file():
            raise InputFileError(f"corpus file not found: {self.corpus}")
        if not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ConfigError(f"minutes must be a positive number, got {self.minutes}")
        if not self.max_corpus_mb > 0:
            raise ConfigError(f"max_corpus_mb must be positive, got {self.max_corpus_mb}")
        if self.vocab_size < 257 + 1:
            raise ConfigError(f"vocab_size must be at least 258 (256 bytes, <|endoftext|> and one merge), got {self.vocab_size}")
        if self.vocab_size > 65_536:
            raise ConfigError(f"vocab_size must be at most 65,536 for uint16 token files, got {self.vocab_size}")
        if self.val_every < 2:
            raise ConfigError(f"val_every must be at least 2, got {self.val_every}")
        for name in ("batch_size", "eval_tokens", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {self.max_steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.lr_min_ratio <= 1:
            raise ConfigError(f"lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not self.prompts or not all(p.strip() for p in self.prompts):
            raise ConfigError("prompts must be a non-empty list of non-empty strings")
        from tinylm.generate import check_sampling

        check_sampling(self.temperature, self.top_p)  # before training, not after it at the samples
        self.model_config()  # shape checks (d_model % num_heads, ...) with ModelConfig's messages

    def model_config(self):
        from tinylm.model.config import ModelConfig

        return ModelConfig(
            vocab_size=self.vocab_size,
            context_length=self.context_length,
            d_model=self.d_model,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class QuickstartResult:
    out_dir: Path
    report: dict  # everything report.json holds

    @property
    def val_loss(self) -> float:
        return self.report["evaluation"]["val_loss"]

    @property
    def val_bpb(self) -> float:
        return self.report["evaluation"]["val_bpb"]


def _echo_default(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_quickstart(config: QuickstartConfig, command: str | None = None, echo: Callable[[str], None] | None = None) -> QuickstartResult:
    """Run the whole pipeline; `echo` receives each stage's one-line summary (default: stderr)."""
    import torch

    config.validate()
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but PyTorch sees no CUDA device (is the CUDA build of torch installed?)")
    echo = echo or _echo_default
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    out = Path(config.out_dir)
    if (out / "report.json").exists() or (out / "run" / "checkpoint.pt").exists():
        echo(f"note: replacing the previous quick-start run in {out} (choose another folder with --out to keep it)")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    report: dict = {
        "command": command or "tinylm quickstart",
        "config": config.to_dict(),
        "environment": _environment(config),
    }

    # 1. corpus ------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    corpus_info = prepare_corpus(config, out)
    stages["corpus"] = time.perf_counter() - t0
    report["corpus"] = corpus_info
    echo(
        f"[1/7] corpus     {corpus_info['source']}: {corpus_info['bytes'] / 1e6:.1f} MB, {corpus_info['train_docs']} train / "
        f"{corpus_info['val_docs']} validation documents ({stages['corpus']:.1f} s)"
    )

    # 2. tokenizer ---------------------------------------------------------------------------------
    from tinylm.tokenizer.bpe import Tokenizer
    from tinylm.tokenizer.stats import longest_tokens
    from tinylm.tokenizer.train import TrainStats, train_bpe

    t0 = time.perf_counter()
    stats = TrainStats()
    vocab, merges = train_bpe(out / "train.txt", config.vocab_size, [DOC_SEPARATOR], num_workers=config.workers, progress=progress, stats=stats)
    tokenizer = Tokenizer(vocab, merges, [DOC_SEPARATOR])
    tokenizer.save_dir(out / "tokenizer")
    stages["tokenizer"] = time.perf_counter() - t0
    longest = longest_tokens(tokenizer, 10)
    report["tokenizer"] = {
        "vocab_size": tokenizer.vocab_size,
        "merges": len(merges),
        "train_seconds": stages["tokenizer"],
        "count_seconds": stats.count_seconds,
        "merge_seconds": stats.merge_seconds,
        "distinct_pretokens": stats.distinct_pretokens,
        "longest_tokens": [{"id": i, "bytes": len(t), "text": t.decode("utf-8", errors="replace")} for i, t in longest],
        "token_lengths": sorted(len(t) for t in vocab.values()),
    }
    echo(
        f"[2/7] tokenizer  {tokenizer.vocab_size:,} tokens ({len(merges):,} merges) in {stages['tokenizer']:.1f} s; "
        f"longest {longest[0][1].decode('utf-8', errors='replace')!r} ({len(longest[0][1])} bytes)"
    )

    # 3. encode ------------------------------------------------------------------------------------
    from tinylm.tokenizer.chunking import pool_context
    from tinylm.tokenizer.dataset import encode_file, load_info

    t0 = time.perf_counter()
    workers = config.workers or os.cpu_count() or 1
    # both files at once: validation in a child process, training spread over `workers` processes
    # (processes, not threads: forking worker pools from a threaded process can deadlock)
    val_proc = pool_context().Process(target=_encode_quietly, args=(tokenizer, out / "val.txt", out / "val.npy"))
    val_proc.start()
    try:
        train_info = encode_file(tokenizer, out / "train.txt", out / "train.npy", num_workers=workers, progress=progress)
    finally:
        val_proc.join()
    val_info = load_info(out / "val.npy")
    if val_proc.exitcode != 0 or val_info is None:
        raise ConfigError(f"encoding the validation split failed (exit code {val_proc.exitcode})")
    stages["encode"] = time.perf_counter() - t0
    report["tokenizer"].update(
        train_tokens=train_info.num_tokens,
        val_tokens=val_info.num_tokens,
        train_bytes_per_token=train_info.bytes_per_token,
        val_bytes_per_token=val_info.bytes_per_token,
        encode_seconds=stages["encode"],
        encode_mb_per_s=(train_info.num_bytes + val_info.num_bytes) / 1e6 / max(stages["encode"], 1e-9),
    )
    echo(
        f"[3/7] encode     {train_info.num_tokens:,} train + {val_info.num_tokens:,} validation tokens "
        f"({train_info.bytes_per_token:.2f} bytes/token) in {stages['encode']:.1f} s"
    )
    if val_info.num_tokens < config.context_length + 2 or train_info.num_tokens < config.context_length + 2:
        raise ConfigError(
            f"too little text for context_length {config.context_length}: {train_info.num_tokens} train and "
            f"{val_info.num_tokens} validation tokens; give a larger corpus or a shorter context"
        )

    # 4. train -------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    training = train_model(config, out, progress)
    stages["train"] = time.perf_counter() - t0
    report["training"] = training
    echo(
        f"[4/7] train      {training['params'] / 1e6:.2f}M-parameter model, {training['steps']:,} steps "
        f"({training['tokens'] / 1e6:.2f}M tokens, {training['tokens_per_s']:,.0f} tokens/s) in {stages['train'] / 60:.1f} min; "
        f"final train loss {training['train_loss']:.3f}"
    )

    # 5. evaluate ----------------------------------------------------------------------------------
    from tinylm.generate import load_run

    t0 = time.perf_counter()
    model, run_tokenizer = load_run(out / "run", config.device)
    evaluation = evaluate(model, run_tokenizer, out / "val.npy", config, progress)
    stages["evaluate"] = time.perf_counter() - t0
    report["evaluation"] = evaluation
    echo(
        f"[5/7] evaluate   validation loss {evaluation['val_loss']:.4f} nats/token = {evaluation['val_bpb']:.4f} bits/byte "
        f"(perplexity {evaluation['val_perplexity']:.1f}) on {evaluation['tokens']:,} tokens ({stages['evaluate']:.1f} s)"
    )

    # 6. samples -----------------------------------------------------------------------------------
    from tinylm.generate import generate

    t0 = time.perf_counter()
    samples = []
    prompts = list(config.prompts)
    for i, prompt in enumerate(_bar(prompts, progress, "samples")):
        text = generate(model, run_tokenizer, prompt, config.max_new_tokens, config.temperature, config.top_p, seed=config.seed + i)
        samples.append({"prompt": prompt, "completion": text})
    stages["samples"] = time.perf_counter() - t0
    report["samples"] = samples
    echo(f"[6/7] samples    {len(samples)} continuations of {config.max_new_tokens} tokens ({stages['samples']:.1f} s):")
    for s in samples:
        echo("        " + " ".join((s["prompt"] + s["completion"]).split())[:200])

    # 7. report ------------------------------------------------------------------------------------
    from tinylm.report_html import write_report

    t0 = time.perf_counter()
    stages["report"] = 0.0
    report["stages_seconds"] = stages
    report["total_seconds"] = time.perf_counter() - t_start
    html_path = write_report(report, out / "run", out / "report.html")
    stages["report"] = time.perf_counter() - t0
    report["total_seconds"] = time.perf_counter() - t_start
    (out / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    echo(f"[7/7] report     {html_path} (self-contained; open it in a browser) and {out / 'report.json'}")
    echo(
        f"done in {report['total_seconds'] / 60:.1f} min: validation {evaluation['val_bpb']:.3f} bits/byte; "
        f"sample more with: tinylm generate --checkpoint {out / 'run'} --prompt \"...\""
    )
    return QuickstartResult(out, report)


def _encode_quietly(tokenizer, src: Path, dst: Path) -> None:
    from tinylm.tokenizer.dataset import encode_file

    encode_file(tokenizer, src, dst, num_workers=1, progress=False)


# --- stage 1 ------------------------------------------------------------------------------------
def prepare_corpus(config: QuickstartConfig, out: Path) -> dict:
    """Write out/train.txt and out/val.txt; documents are split on <|endoftext|>."""
    from tinylm.data import extract_bundled_corpus, hold_out_every, split_documents, write_documents

    if config.corpus is None:
        source = "bundled public-domain prose (tinylm/data/pd_prose.txt.xz)"
        path = extract_bundled_corpus(out / "corpus.txt")
    else:
        source = str(config.corpus)
        path = Path(config.corpus)
    limit = int(config.max_corpus_mb * 1e6)
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    truncated = len(data) > limit
    if truncated:
        data = data[:limit]
        cut = data.rfind(DOC_SEPARATOR.encode())
        if cut <= 0:
            cut = data.rfind(b"\n")
        data = data[: cut if cut > 0 else limit]
    docs = split_documents(data.decode("utf-8", errors="replace"))
    if not docs:
        raise InputFileError(f"the corpus {path} holds no text")
    if len(docs) >= 2 * config.val_every:
        train, val = hold_out_every(docs, config.val_every)
        how = f"every {config.val_every}th document"
    else:  # too few documents (a plain text file): the last 1/val_every of the text, cut at a line
        joined = f"\n{DOC_SEPARATOR}\n".join(docs)
        cut = joined.rfind("\n", 0, len(joined) - len(joined) // config.val_every)
        cut = cut if cut > 0 else len(joined) - len(joined) // config.val_every
        train, val = [joined[:cut]], [joined[cut:].lstrip("\n")]
        how = f"the last 1/{config.val_every} of the text"
    write_documents(out / "train.txt", train)
    write_documents(out / "val.txt", val)
    return {
        "source": source,
        "bytes": len(data),
        "truncated_to_mb": config.max_corpus_mb if truncated else None,
        "documents": len(docs),
        "train_docs": len(train),
        "val_docs": len(val),
        "train_bytes": (out / "train.txt").stat().st_size,
        "val_bytes": (out / "val.txt").stat().st_size,
        "validation": how,
    }


# --- stage 4 ------------------------------------------------------------------------------------
def measure_step_seconds(config: QuickstartConfig, steps: int = 3) -> float:
    """Seconds per training step of this model on this machine (a throwaway model, random data)."""
    import torch

    from tinylm.model.transformer import TransformerLM
    from tinylm.training.optim import AdamW, cross_entropy

    mc = config.model_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = TransformerLM(mc).to(config.device)
        opt = AdamW(model.parameters(), lr=1e-4)
        x = torch.randint(0, mc.vocab_size, (config.batch_size, mc.context_length), device=config.device)
        times = []
        for _ in range(steps + 1):  # the first step pays for allocation: not counted
            t = time.perf_counter()
            cross_entropy(model(x), x).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if config.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return sorted(times[1:])[len(times[1:]) // 2]


def train_model(config: QuickstartConfig, out: Path, progress: bool) -> dict:
    """Train in out/run for config.minutes of wall-clock (or config.max_steps); returns a summary."""
    from tinylm.training.config import DataConfig, OptimConfig, RunConfig, TokenizerConfig, TrainConfig, to_toml
    from tinylm.training.loop import CONFIG, Trainer

    budget = config.minutes * 60
    t_cal = time.perf_counter()
    if config.max_steps is None:
        step_seconds = measure_step_seconds(config)
        # an estimate only, to space evaluations and logs: the budget itself ends the run
        steps = max(10, int(budget / step_seconds))
    else:
        step_seconds = None
        steps = config.max_steps
    calibration_seconds = time.perf_counter() - t_cal
    budget -= calibration_seconds
    warmup = int(config.warmup_fraction * steps)
    eval_interval = max(1, steps // 10)
    # 11 evaluations of eval_batches × batch_size windows, forward only (~1/3 of a step each): ~4 % of the steps
    eval_batches = 4 if steps >= 300 else 2
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    train_config = TrainConfig(
        model=config.model_config().to_dict(),
        data=DataConfig(train=str(out / "train.npy"), val=str(out / "val.npy")),
        tokenizer=TokenizerConfig(dir=str(out / "tokenizer")),
        optim=OptimConfig(lr_max=config.lr, lr_min=config.lr * config.lr_min_ratio, warmup_iters=warmup, weight_decay=config.weight_decay),
        train=RunConfig(
            batch_size=config.batch_size,
            max_steps=steps,
            eval_interval=eval_interval,
            eval_batches=eval_batches,
            log_interval=max(1, min(10, steps // 100)),
            checkpoint_interval=max(steps, 1),  # one checkpoint, at the end: the budget goes to training
            device=config.device,
            seed=config.seed,
            out_dir=str(run_dir),
            progress=progress and config.max_steps is not None,  # a time budget gets its own bar (below)
        ),
    )
    if config.max_steps is None:
        trainer = _time_budget_trainer(train_config, budget=budget, warmup_fraction=config.warmup_fraction)
        trainer.total_steps = 1 << 40  # the budget, not a step count, ends the run
    else:
        trainer = Trainer(train_config)
    first_estimate = steps
    stopped_by_budget = False
    bar = None
    if config.max_steps is None:
        from tinylm.progress import progress_bar

        bar = progress_bar(total=round(budget), desc="training", unit="s", disable=not progress, dynamic_ncols=True)

    def on_step(step: int, record: dict | None) -> bool:
        nonlocal stopped_by_budget
        if config.max_steps is None:
            fraction = trainer.budget_fraction()
            bar.update(min(round(budget), round(fraction * budget)) - bar.n)
            if record is not None:
                bar.set_postfix(step=step, loss=f"{record['train_loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
            if fraction >= 1.0:
                stopped_by_budget = True
                return True
        return False

    trainer.on_step = on_step
    t0 = time.perf_counter()
    try:
        result = trainer.run()
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    if config.max_steps is None:
        # config.toml describes a step schedule close to the one that ran (cosine over the steps
        # actually taken), so `tinylm train --resume <out>/run --max-steps N` can extend the run
        trainer.total_steps = result.step
        trainer.config.train.max_steps = result.step
        trainer.config.optim.warmup_iters = min(trainer.config.optim.warmup_iters, result.step)
        trainer.config.optim.cosine_iters = max(result.step, trainer.config.optim.warmup_iters)
    (run_dir / CONFIG).write_text(to_toml(trainer.config), encoding="utf-8")
    params = sum(p.numel() for p in trainer.model.parameters())
    return {
        "params": params,
        "params_non_embedding": params - trainer.model_config.vocab_size * trainer.model_config.d_model * 2,
        "steps": result.step,
        "first_estimate_steps": first_estimate,
        "schedule": "cosine over the wall-clock budget" if config.max_steps is None else "cosine over max_steps",
        "measured_step_seconds": step_seconds,
        "calibration_seconds": calibration_seconds,
        "stopped_by_budget": stopped_by_budget,
        "tokens": result.step * trainer.tokens_per_step,
        "seconds": seconds,
        "tokens_per_s": result.step * trainer.tokens_per_step / max(seconds, 1e-9),
        "train_loss": result.train_loss,
        "last_val_loss": result.val_loss,
        "warmup_iters": warmup,
        "eval_interval": eval_interval,
        "run_dir": str(run_dir),
    }


def _time_budget_trainer(train_config, budget: float, warmup_fraction: float):
    """A Trainer whose learning rate follows warm-up and cosine over the wall-clock budget.

    The step a budget allows depends on the machine's load while it runs (this machine is shared),
    so the schedule is indexed by the elapsed fraction of the budget, not by the step: the cosine
    always completes when the budget does, however fast or slow the steps turn out to be.
    """
    from tinylm.training.loop import Trainer
    from tinylm.training.optim import cosine_lr

    class TimeBudgetTrainer(Trainer):
        _started: float | None = None

        def budget_fraction(self) -> float:
            if self._started is None:
                return 0.0
            return (time.perf_counter() - self._started) / budget

        def set_lr(self) -> float:
            if self._started is None:
                self._started = time.perf_counter()
            o, grid = self.config.optim, 100_000
            position = min(self.budget_fraction(), 1.0) * grid
            lr = cosine_lr(int(position), o.lr_max, o.lr_min, int(warmup_fraction * grid), grid)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            return lr

    return TimeBudgetTrainer(train_config)


# --- stage 5 ------------------------------------------------------------------------------------
def evaluate(model, tokenizer, val_path: Path, config: QuickstartConfig, progress: bool) -> dict:
    """Mean cross-entropy over non-overlapping windows of the validation tokens (up to eval_tokens
    predictions, evenly spread), and bits per byte from the exact UTF-8 bytes of the predicted tokens."""
    import numpy as np
    import torch

    from tinylm.training.data import load_tokens, token_byte_lengths, windows
    from tinylm.training.optim import cross_entropy

    tokens = load_tokens(val_path, "uint16")
    ctx = model.config.context_length
    available = (len(tokens) - 1) // ctx
    n_windows = max(1, min(available, config.eval_tokens // ctx))
    starts = np.linspace(0, (available - 1) * ctx, n_windows).astype(np.int64) // ctx * ctx
    starts = np.unique(starts)
    lengths = token_byte_lengths(tokenizer.vocab, model.config.vocab_size)
    device = next(model.parameters()).device
    total_nats, total_tokens, total_bytes = 0.0, 0, 0
    model.eval()
    batch = config.batch_size
    with torch.no_grad():
        for i in _bar(range(0, len(starts), batch), progress, "evaluating"):
            x, y = windows(tokens, starts[i : i + batch], ctx, device)
            total_nats += float(cross_entropy(model(x), y)) * y.numel()
            total_tokens += y.numel()
            total_bytes += int(lengths[y.cpu().numpy()].sum())
    loss = total_nats / total_tokens
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 700.0)),
        "val_bpb": total_nats / math.log(2) / max(total_bytes, 1),
        "tokens": total_tokens,
        "bytes": total_bytes,
        "windows": len(starts),
        "uniform_bpb": math.log2(model.config.vocab_size) * total_tokens / max(total_bytes, 1),
    }


def _bar(items, progress: bool, desc: str):
    from tinylm.progress import progress_bar

    return progress_bar(items, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


def _environment(config: QuickstartConfig) -> dict:
    import torch

    from tinylm import __version__

    env = {
        "tinylm": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": config.device,
    }
    if config.device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env
