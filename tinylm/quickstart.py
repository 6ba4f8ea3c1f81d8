"""`tinylm quickstart`: raw text to a model that writes, in one call, offline, within a time budget.

Stages (each prints a progress bar while it runs and one summary line when it ends):

1. corpus    extract the bundled public-domain corpus (or read `corpus`), split it into train and
             validation documents (every 20th document goes to validation)
2. tokenizer train a byte-level BPE tokenizer (a few thousand tokens) on the training split
3. encode    encode train and validation to uint16 token arrays, both at once
4. train     train a small Transformer LM for `minutes` of wall-clock (the trainer's `max_minutes`
             budget: the learning-rate schedule runs over the elapsed fraction of the budget, so it completes when
             the budget does on any machine; measured steps only space the evaluations)
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

from tinylm.corpus.bundled import DOC_SEPARATOR
from tinylm.errors import ConfigError, InputFileError
from tinylm.tokenizer.token_dtypes import UINT16_VOCAB_LIMIT
from tinylm.io import atomic_write_bytes
from tinylm.recipes import DEFAULT_RECIPE, RECIPES, model_overrides, quickstart_defaults, recipe_overrides
from tinylm.training.run_dir import RunDir

DEFAULT_PROMPTS = (
    "Once upon a time",
    "It is a truth universally acknowledged",
    "And the LORD said unto",
    "Fellow-Citizens of the Senate and House of Representatives:",
    "My lord, I",
)


# QuickstartConfig fields a recipe may tune for the quick-start model (`quickstart.FIELD` keys of
# tinylm.recipes.RECIPES), with the value used when neither the user nor the recipe sets them
RECIPE_TUNED_FALLBACKS = {"batch_size": 32, "lr": 1e-2, "warmup_fraction": 0.05, "weight_decay": 0.1, "num_layers": 4}
_SCHEDULE_NAMES = {"cosine": "cosine", "wsd": "warm-up-stable-decay"}  # optim.schedule -> the report's words


@dataclass
class QuickstartConfig:
    """Everything one quick-start run depends on (saved, resolved, in report.json and report.html)."""

    corpus: str | None = None  # a text file with documents separated by <|endoftext|>, or any corpus tinylm.corpus reads (JSON Lines, Parquet, compressed, folder, glob); None: the bundled corpus
    text_field: str = "text"  # the JSON field / Parquet column of a JSON Lines or Parquet corpus
    skip_bad_records: bool = False  # skip (and count) bad records of such a corpus instead of stopping
    out_dir: str = "runs/quickstart"
    minutes: float = 7.5  # wall-clock budget for the training stage (the other stages take about a minute)
    max_corpus_mb: float = 64.0  # read at most this much of `corpus` (cut at a document boundary)
    val_every: int = 20  # every val_every-th document is validation
    # tokenizer
    vocab_size: int = 4096
    # model
    context_length: int = 128
    d_model: int = 128
    num_layers: int | None = None  # None: the recipe's quick-start depth, else 4
    num_heads: int = 4
    d_ff: int | None = None  # None: the SwiGLU default (8/3 d_model, rounded to 64)
    # optimisation
    batch_size: int | None = None  # None: the recipe's quick-start batch size, else 32
    lr: float | None = None  # peak learning rate (AdamW; Muon's follows it); None: the recipe's, else 1e-2
    lr_min_ratio: float = 0.1
    warmup_fraction: float | None = None  # None: the recipe's, else 0.05
    weight_decay: float | None = None  # AdamW's (embeddings, head); None: the recipe's, else 0.1
    max_steps: int | None = None  # set to train a fixed number of steps instead of a time budget
    recipe: str = DEFAULT_RECIPE  # a named recipe (tinylm.recipes): tinylm (chosen by benchmarks/bench_recipe.py), cs336, nanogpt
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

    def __post_init__(self) -> None:
        """Fills the fields left None from the recipe's `quickstart.*` defaults (tinylm.recipes), else
        the fallbacks; an unknown recipe leaves the fallbacks and is refused by validate()."""
        tuned = quickstart_defaults(self.recipe) if self.recipe in RECIPES else {}
        for name, fallback in RECIPE_TUNED_FALLBACKS.items():
            if getattr(self, name) is None:
                setattr(self, name, tuned.get(name, fallback))

    def validate(self) -> None:
        if self.corpus is not None:
            from tinylm.corpus import resolve_shards

            if not Path(self.corpus).exists() and not any(c in str(self.corpus) for c in "*?["):
                raise InputFileError(f"corpus file not found: {self.corpus}")
            resolve_shards(self.corpus)  # an empty file or folder, an unknown extension: one clear error before any work
        if not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ConfigError(f"minutes must be a positive number, got {self.minutes}")
        if not self.max_corpus_mb > 0:
            raise ConfigError(f"max_corpus_mb must be positive, got {self.max_corpus_mb}")
        if self.vocab_size < 257 + 1:
            raise ConfigError(f"vocab_size must be at least 258 (256 bytes, <|endoftext|> and one merge), got {self.vocab_size}")
        if self.vocab_size > UINT16_VOCAB_LIMIT:
            raise ConfigError(f"vocab_size must be at most {UINT16_VOCAB_LIMIT:,} for uint16 token files, got {self.vocab_size}")
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
        recipe_overrides(self.recipe)  # an unknown recipe is a ConfigError naming the known ones
        unknown = sorted(set(quickstart_defaults(self.recipe)) - set(RECIPE_TUNED_FALLBACKS))
        if unknown:
            raise ConfigError(f"recipe {self.recipe!r} sets quickstart.{unknown[0]}, which is not one of the quick start's "
                              f"recipe-tuned fields ({', '.join(RECIPE_TUNED_FALLBACKS)})")
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
            **model_overrides(self.recipe),
        )

    def optim_overrides(self) -> dict:
        """The recipe's [optim] settings (`optim.key -> value`), applied over the quick start's own."""
        return {k: v for k, v in recipe_overrides(self.recipe).items() if k.startswith("optim.")}

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


class _Stages:
    """Runs the numbered stages: times each one, prints its one-line summary, keeps the seconds."""

    def __init__(self, echo: Callable[[str], None], total: int = 7):
        self.echo, self.total, self.seconds = echo, total, {}

    def run(self, name: str, work: Callable[[], object], summary: Callable[[object, float], str]):
        t0 = time.perf_counter()
        result = work()
        self.seconds[name] = seconds = time.perf_counter() - t0
        self.echo(f"[{len(self.seconds)}/{self.total}] {name:<10} {summary(result, seconds)}")
        return result


def run_quickstart(config: QuickstartConfig, command: str | None = None, echo: Callable[[str], None] | None = None) -> QuickstartResult:
    """Run the whole pipeline; `echo` receives each stage's one-line summary (default: stderr)."""
    config.validate()
    _check_device(config.device)
    echo = echo or _echo_default
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    out = Path(config.out_dir)
    if (out / "report.json").exists() or RunDir(out / "run").checkpoint.exists():
        echo(f"note: replacing the previous quick-start run in {out} (choose another folder with --out to keep it)")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report: dict = {"command": command or "tinylm quickstart", "config": config.to_dict(), "environment": _environment(config)}
    stages = _Stages(echo)

    report["corpus"] = stages.run("corpus", lambda: prepare_corpus(config, out), _corpus_line)
    tokenizer, report["tokenizer"] = stages.run("tokenizer", lambda: train_tokenizer(config, out, progress), _tokenizer_line)
    report["tokenizer"].update(stages.run("encode", lambda: encode_splits(config, out, tokenizer, progress), _encode_line))
    trainer, report["training"] = stages.run("train", lambda: train_model(config, out, progress), _train_line)
    report["evaluation"] = stages.run("evaluate", lambda: evaluate_model(trainer, config, progress), _evaluate_line)
    report["samples"] = stages.run("samples", lambda: sample_prompts(trainer, config, progress), _samples_lines)
    html_path = stages.run("report", lambda: write_reports(report, stages.seconds, t_start, out), _report_line)
    echo(
        f"done in {report['total_seconds'] / 60:.1f} min: validation {report['evaluation']['val_bpb']:.3f} bits/byte; "
        f"sample more with: tinylm generate --checkpoint {out / 'run'} --prompt \"...\" ({html_path})"
    )
    return QuickstartResult(out, report)


def _check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but PyTorch sees no CUDA device (is the CUDA build of torch installed?)")


# --- the one-line summaries -------------------------------------------------------------------------
def _corpus_line(info: dict, seconds: float) -> str:
    return (f"{info['source']}: {info['bytes'] / 1e6:.1f} MB, {info['train_docs']} train / "
            f"{info['val_docs']} validation documents ({seconds:.1f} s)")


def _tokenizer_line(result, seconds: float) -> str:
    tokenizer, info = result
    longest = info["longest_tokens"][0]
    return (f"{tokenizer.vocab_size:,} tokens ({info['merges']:,} merges) in {seconds:.1f} s; "
            f"longest {longest['text']!r} ({longest['bytes']} bytes)")


def _encode_line(info: dict, seconds: float) -> str:
    return (f"{info['train_tokens']:,} train + {info['val_tokens']:,} validation tokens "
            f"({info['train_bytes_per_token']:.2f} bytes/token) in {seconds:.1f} s")


def _train_line(result, seconds: float) -> str:
    _, t = result
    return (f"{t['params'] / 1e6:.2f}M-parameter model, {t['steps']:,} steps ({t['tokens'] / 1e6:.2f}M tokens, "
            f"{t['tokens_per_s']:,.0f} tokens/s) in {seconds / 60:.1f} min; final train loss {t['train_loss']:.3f}")


def _evaluate_line(ev: dict, seconds: float) -> str:
    return (f"validation loss {ev['val_loss']:.4f} nats/token = {ev['val_bpb']:.4f} bits/byte "
            f"(perplexity {ev['val_perplexity']:.1f}) on {ev['tokens']:,} tokens ({seconds:.1f} s)")


def _samples_lines(samples: list[dict], seconds: float) -> str:
    lines = [f"{len(samples)} continuations ({seconds:.1f} s):"]
    lines += ["        " + " ".join((s["prompt"] + s["completion"]).split())[:200] for s in samples]
    return "\n".join(lines)


def _report_line(html_path: Path, seconds: float) -> str:
    return f"{html_path} (self-contained; open it in a browser) and {html_path.parent / 'report.json'}"


# --- stages 2, 3, 6, 7 ---------------------------------------------------------------------------------
def train_tokenizer(config: QuickstartConfig, out: Path, progress: bool):
    """A byte-level BPE tokenizer on out/train.txt, saved to out/tokenizer; (tokenizer, statistics)."""
    from tinylm.tokenizer.stats import longest_tokens
    from tinylm.tokenizer.train import BpeTrainer

    t0 = time.perf_counter()
    trainer = BpeTrainer(config.vocab_size, (DOC_SEPARATOR,), workers=config.workers, progress=progress)
    tokenizer, stats = trainer.train(out / "train.txt")
    tokenizer.save_dir(out / "tokenizer")
    return tokenizer, {
        "vocab_size": tokenizer.vocab_size,
        "merges": stats.num_merges,
        "train_seconds": time.perf_counter() - t0,
        "count_seconds": stats.count_seconds,
        "merge_seconds": stats.merge_seconds,
        "distinct_pretokens": stats.distinct_pretokens,
        "longest_tokens": [{"id": i, "bytes": len(t), "text": t.decode("utf-8", errors="replace")} for i, t in longest_tokens(tokenizer, 10)],
        "token_lengths": sorted(len(t) for t in tokenizer.vocab.values()),
    }


def encode_splits(config: QuickstartConfig, out: Path, tokenizer, progress: bool) -> dict:
    """out/train.npy and out/val.npy, both at once: validation in a child process, training spread over
    the workers (processes, not threads: forking worker pools from a threaded process can deadlock)."""
    from tinylm.tokenizer.chunking import pool_context
    from tinylm.tokenizer.token_arrays import encode_file, load_info

    t0 = time.perf_counter()
    val_proc = pool_context().Process(target=_encode_quietly, args=(tokenizer, out / "val.txt", out / "val.npy"))
    val_proc.start()
    try:
        train_info = encode_file(tokenizer, out / "train.txt", out / "train.npy", num_workers=config.workers or os.cpu_count() or 1,
                                 progress=progress)
    finally:
        val_proc.join()
    val_info = load_info(out / "val.npy")
    if val_proc.exitcode != 0 or val_info is None:
        raise ConfigError(f"encoding the validation split failed (exit code {val_proc.exitcode})")
    seconds = time.perf_counter() - t0
    if min(val_info.num_tokens, train_info.num_tokens) < config.context_length + 2:
        raise ConfigError(
            f"too little text for context_length {config.context_length}: {train_info.num_tokens} train and "
            f"{val_info.num_tokens} validation tokens; give a larger corpus or a shorter context"
        )
    return {
        "train_tokens": train_info.num_tokens,
        "val_tokens": val_info.num_tokens,
        "train_bytes_per_token": train_info.bytes_per_token,
        "val_bytes_per_token": val_info.bytes_per_token,
        "encode_seconds": seconds,
        "encode_mb_per_s": (train_info.num_bytes + val_info.num_bytes) / 1e6 / max(seconds, 1e-9),
    }


def _encode_quietly(tokenizer, src: Path, dst: Path) -> None:
    from tinylm.tokenizer.token_arrays import encode_file

    encode_file(tokenizer, src, dst, num_workers=1, progress=False)


def sample_prompts(trainer, config: QuickstartConfig, progress: bool) -> list[dict]:
    """One continuation of each prompt from the trained model (seed + i for the i-th prompt)."""
    from tinylm.generate import generate

    return [
        {"prompt": prompt, "completion": generate(trainer.model, trainer.tokenizer, prompt, config.max_new_tokens, config.temperature,
                                                  config.top_p, seed=config.seed + i)}
        for i, prompt in enumerate(_bar(list(config.prompts), progress, "samples"))
    ]


def write_reports(report: dict, stage_seconds: dict, t_start: float, out: Path) -> Path:
    """report.json and the self-contained report.html (the report stage's own time is left out)."""
    from tinylm.report_html import write_report

    report["stages_seconds"] = stage_seconds
    report["total_seconds"] = time.perf_counter() - t_start
    html_path = write_report(report, out / "run", out / "report.html")
    report["total_seconds"] = time.perf_counter() - t_start
    atomic_write_bytes(out / "report.json", json.dumps(report, indent=1, ensure_ascii=False).encode("utf-8"))
    return html_path


# --- stage 1 ------------------------------------------------------------------------------------
def prepare_corpus(config: QuickstartConfig, out: Path) -> dict:
    """Write out/train.txt and out/val.txt; documents are split on <|endoftext|>."""
    from tinylm.corpus import extract_bundled_corpus, is_single_plain_text, split_documents

    if config.corpus is None:
        source = "bundled public-domain prose (tinylm/corpus/pd_prose.txt.xz)"
        path = extract_bundled_corpus(out / "corpus.txt")
    else:
        source = str(config.corpus)
        path = Path(config.corpus)
    limit = int(config.max_corpus_mb * 1e6)
    if not is_single_plain_text(path):
        docs, size, truncated = _read_corpus_documents(config, limit)
        return _write_splits(config, out, source, docs, size, truncated)
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
    return _write_splits(config, out, source, docs, len(data), truncated)


def _read_corpus_documents(config: QuickstartConfig, limit: int) -> tuple[list[str], int, bool]:
    """(documents, their UTF-8 bytes, whether cut): the documents of a corpus of shards, streamed,
    stopping before the one that would pass `limit` bytes (tinylm.corpus.corpus_documents)."""
    from tinylm.corpus import ReadOptions, ReadStats, corpus_documents, resolve_shards

    options = ReadOptions(text_field=config.text_field, skip_bad_records=config.skip_bad_records)
    docs, size = [], 0
    for doc in corpus_documents(resolve_shards(config.corpus), options, ReadStats()):
        n = len(doc.encode("utf-8", "surrogatepass")) + len(DOC_SEPARATOR)
        if size + n > limit and docs:
            return [d for d in (x.strip("\n") for x in docs) if d.strip()], size, True
        docs.append(doc)
        size += n
    return [d for d in (x.strip("\n") for x in docs) if d.strip()], size, False


def _write_splits(config: QuickstartConfig, out: Path, source: str, docs: list[str], size: int, truncated: bool) -> dict:
    """Write out/train.txt and out/val.txt from the documents; the corpus stage's summary."""
    from tinylm.corpus import hold_out_every, write_documents

    if not docs:
        raise InputFileError(f"the corpus {source} holds no text")
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
        "bytes": size,
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


def train_model(config: QuickstartConfig, out: Path, progress: bool):
    """Train in out/run for config.minutes of wall-clock (or config.max_steps); (trainer, summary).

    The wall-clock budget is the trainer's own (`train.max_minutes`: warm-up over the first steps,
    then the schedule over the elapsed fraction of the budget, so it completes when the budget does on
    any machine, however loaded). A few measured steps estimate the step count, used only to space
    evaluations and size the warm-up.
    """
    from tinylm.training.config import DataConfig, OptimConfig, RunConfig, TokenizerConfig, TrainConfig
    from tinylm.training.loop import Trainer

    t_cal = time.perf_counter()
    if config.max_steps is None:
        step_seconds = measure_step_seconds(config)
        steps = max(10, int(config.minutes * 60 / step_seconds))  # an estimate: the budget ends the run
    else:
        step_seconds = None
        steps = config.max_steps
    calibration_seconds = time.perf_counter() - t_cal
    warmup = int(config.warmup_fraction * steps)
    eval_interval = max(1, steps // 10)
    # 11 evaluations of 2-4 batches of windows, forward only (~1/3 of a step each): ~4 % of the steps
    eval_windows = (4 if steps >= 300 else 2) * config.batch_size
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    budget = {"max_steps": steps} if config.max_steps is not None else {"max_minutes": config.minutes}
    train_config = TrainConfig(
        model=config.model_config(),
        data=DataConfig(train=str(out / "train.npy"), val=str(out / "val.npy")),
        tokenizer=TokenizerConfig(dir=str(out / "tokenizer")),
        optim=OptimConfig(lr_max=config.lr, lr_min=config.lr * config.lr_min_ratio, warmup_iters=warmup, weight_decay=config.weight_decay),
        train=RunConfig(
            batch_size=config.batch_size,
            **budget,
            eval_interval=eval_interval,
            eval_windows=eval_windows,
            log_interval=max(1, min(10, steps // 100)),
            # one checkpoint, at the end: the budget goes to training (a time budget may run past the estimate)
            checkpoint_interval=max(steps, 1) if config.max_steps is not None else 1 << 40,
            device=config.device,
            seed=config.seed,
            out_dir=str(run_dir),
            progress=progress,
        ),
    )
    trainer = Trainer(train_config.with_overrides(config.optim_overrides()))
    t0 = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in trainer.model.parameters())
    return trainer, {
        "params": params,
        "params_non_embedding": params - trainer.model_config.vocab_size * trainer.model_config.d_model * 2,
        "steps": result.step,
        "first_estimate_steps": steps,
        "schedule": f"{_SCHEDULE_NAMES[trainer.config.optim.schedule]} over "
                    + ("the wall-clock budget" if config.max_steps is None else "max_steps"),
        "measured_step_seconds": step_seconds,
        "calibration_seconds": calibration_seconds,
        "stopped_by_budget": config.max_steps is None and not result.interrupted,
        "tokens": trainer.tokens_seen,
        "seconds": seconds,
        "tokens_per_s": trainer.tokens_seen / max(seconds, 1e-9),
        "train_loss": result.train_loss,
        "last_val_loss": result.val_loss,
        "warmup_iters": warmup,
        "eval_interval": eval_interval,
        "run_dir": str(run_dir),
    }


# --- stage 5 ------------------------------------------------------------------------------------
def evaluate_model(trainer, config: QuickstartConfig, progress: bool) -> dict:
    """The trained model on up to `eval_tokens` of the validation split: evenly spread windows (not
    overlapping while the split is long enough), scored by the library's `evaluate_bpb` (exact bytes
    of each predicted token)."""
    from tinylm.training.batches import eval_starts
    from tinylm.training.evaluate import evaluate_bpb

    tokens, ctx = trainer.val_tokens, trainer.model_config.context_length
    n_windows = max(1, min((len(tokens) - 1) // ctx, config.eval_tokens // ctx))
    starts = eval_starts(len(tokens), ctx, n_windows)
    ev = evaluate_bpb(trainer.model, tokens, starts, ctx, config.batch_size, trainer.device, trainer.val_token_bytes,
                      progress=lambda chunks: _bar(chunks, progress, "evaluating"))
    return {
        "val_loss": ev.loss,
        "val_perplexity": ev.perplexity,
        "val_bpb": ev.bpb,
        "tokens": ev.tokens,
        "bytes": ev.bytes,
        "windows": ev.windows,
        "uniform_bpb": math.log2(trainer.model_config.vocab_size) * ev.tokens / max(ev.bytes, 1),
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
