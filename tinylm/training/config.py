"""TrainConfig: everything a training run needs, from a TOML file and/or `section.key=value` overrides.

One file describes one run and is saved, resolved, as `config.toml` in the run folder, so
`tinylm train --config runs/x/config.toml` repeats it and `--resume runs/x` continues it. Every
impossible setting is a ConfigError naming the key, before any data is read.

    [model]       # ModelConfig fields (tinylm.model.config)
    [data]        train, val (token files), dtype of raw .bin files, val_bytes_per_token
    [tokenizer]   dir (a `tinylm train-bpe` folder) or vocab + merges, special_tokens
                  (saved into the run folder, which `tinylm generate` then loads as a tokenizer folder)
    [optim]       lr_max, lr_min, warmup_iters, cosine_iters, weight_decay, beta1, beta2, eps, grad_clip,
                  name (adamw | muon), muon_lr, muon_momentum, muon_weight_decay, muon_ns_steps,
                  embedding_lr, schedule (cosine | wsd), decay_fraction, decay_shape (linear | sqrt), z_loss
    [train]       batch_size, grad_accum_steps | global_batch_size, max_steps | max_tokens | max_minutes,
                  eval_interval, eval_windows, log_interval, checkpoint_interval, device, tf32, seed,
                  out_dir, progress, wandb, wandb_project, wandb_mode

Batch sizes: `batch_size` is the sequences one process runs forward at once (a micro-batch: what
fits in memory). One optimizer step sees the global batch = batch_size × grad_accum_steps × world
size (processes under torchrun). Setting `global_batch_size` instead derives grad_accum_steps from
the world size, so the same config trains the same way on 1 or N processes.

Budgets (exactly one): `max_steps` optimizer steps; `max_tokens` training tokens, counted over
all processes and cumulative across resumes with any batch size; `max_minutes` of training
wall-clock (cumulative across resumes), with the cosine running over the elapsed fraction.

Validation: `eval_windows` fixed, evenly spaced windows of the validation file — the same text
for every batch size, micro-batch and process count (batch_size only decides how they are
chunked). Older configs' `eval_batches = N` meant N × batch_size windows and is read as such.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinylm.errors import ConfigError, InputFileError
from tinylm.model.config import ModelConfig
from tinylm.tokenizer.token_dtypes import TOKEN_DTYPES


@dataclass
class DataConfig:
    train: str = ""
    val: str | None = None
    dtype: str | None = None  # raw .bin only: None means the `tinylm encode` sidecar's, else uint16
    val_bytes_per_token: float | None = None  # None: each token's bytes from the tokenizer, else the sidecar's mean


@dataclass
class TokenizerConfig:
    dir: str | None = None
    vocab: str | None = None
    merges: str | None = None
    special_tokens: list[str] | None = None  # None: the folder's special_tokens.json, else <|endoftext|>

    def load(self):
        """The Tokenizer these settings name, or None when none is configured."""
        from tinylm.tokenizer.bpe import Tokenizer

        if self.dir is not None:
            return Tokenizer.from_dir(self.dir, self.special_tokens)
        if self.vocab is not None:
            specials = self.special_tokens if self.special_tokens is not None else ["<|endoftext|>"]
            return Tokenizer.from_files(self.vocab, self.merges, specials)
        return None


@dataclass
class OptimConfig:
    lr_max: float = 1e-3
    lr_min: float = 1e-4
    warmup_iters: int = 100
    cosine_iters: int | None = None  # None: decay over the whole run (max_steps)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 turns clipping off
    name: str = "adamw"  # "adamw", or "muon": Muon for the blocks' 2-D weights, AdamW for the rest
    muon_lr: float = 0.02  # Muon's peak learning rate (follows the schedule: lr × muon_lr / lr_max)
    muon_momentum: float = 0.95
    muon_weight_decay: float = 0.0
    muon_ns_steps: int = 5
    embedding_lr: float | None = None  # the token embedding's peak rate (AdamW, follows the schedule); None: lr_max
    schedule: str = "cosine"  # "cosine", or "wsd" (warm-up, stable at lr_max, linear decay to lr_min)
    decay_fraction: float = 0.2  # wsd: the share of the run (steps or wall-clock) spent decaying
    decay_shape: str = "linear"  # wsd: "linear", or "sqrt" (lr_min + (lr_max - lr_min)(1 - sqrt(t)), Hägele et al. 2024)
    z_loss: float = 0.0  # coefficient of mean(logsumexp(logits)²) added to the loss (PaLM: 1e-4)


@dataclass
class RunConfig:
    batch_size: int = 32  # sequences per micro-batch, per process
    grad_accum_steps: int = 1  # micro-batches per optimizer step (per process)
    global_batch_size: int | None = None  # set: grad_accum_steps = this / (batch_size × world size)
    max_steps: int | None = None
    max_tokens: int | None = None  # cumulative over resumes, all processes
    max_minutes: float | None = None  # training wall-clock, cumulative over resumes
    eval_interval: int = 200
    eval_windows: int = 256  # validation windows (evenly spaced), independent of the batch size
    log_interval: int = 10
    checkpoint_interval: int = 500
    device: str = "cpu"
    tf32: bool = True  # CUDA: TF32 tensor cores for float32 matmuls (torch.set_float32_matmul_precision("high"))
    seed: int = 0
    out_dir: str = "runs/run"
    progress: bool = True
    wandb: bool = False
    wandb_project: str = "tinylm"
    wandb_mode: str = "offline"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        if isinstance(self.model, dict):  # TrainConfig(model={...}): the table as in a TOML file
            self.model = ModelConfig.from_dict(dict(self.model))
        elif not isinstance(self.model, ModelConfig):
            raise ConfigError(f"TrainConfig.model must be a ModelConfig or a table of its settings, got {type(self.model).__name__}")

    # --- derived values ------------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        """The model section (a ModelConfig, validated when the TrainConfig was built)."""
        return self.model

    def grad_accum_steps(self, world_size: int = 1) -> int:
        """Micro-batches per optimizer step on each of `world_size` processes."""
        t = self.train
        if t.global_batch_size is None:
            return t.grad_accum_steps
        per_pass = t.batch_size * world_size
        if t.global_batch_size % per_pass:
            raise ConfigError(
                f"train.global_batch_size ({t.global_batch_size}) is not a multiple of train.batch_size × processes "
                f"({t.batch_size} × {world_size} = {per_pass})"
            )
        return t.global_batch_size // per_pass

    def global_batch_size(self, world_size: int = 1) -> int:
        """Sequences per optimizer step, over all processes and micro-batches."""
        return self.train.batch_size * self.grad_accum_steps(world_size) * world_size

    def steps(self, world_size: int = 1, done_steps: int = 0, done_tokens: int = 0) -> int | None:
        """The step at which the run ends: max_steps, or, for a token budget, the steps done plus
        the steps of the current global batch × context_length that cover the tokens still to go
        (so a budget stays cumulative when a resumed run changes its batch size or process count).
        None for a wall-clock budget (the clock ends it)."""
        t = self.train
        if t.max_steps is not None:
            return t.max_steps
        if t.max_tokens is None:
            return None
        per_step = self.global_batch_size(world_size) * self.model_config().context_length
        return done_steps + max(0, math.ceil((t.max_tokens - done_tokens) / per_step))

    @property
    def total_steps(self) -> int | None:
        """Steps of a fresh one-process run (see `steps` for N processes and resumed runs)."""
        return self.steps(1)

    def with_absolute_paths(self) -> TrainConfig:
        """A copy whose data and tokenizer paths no longer depend on the current directory."""
        def absolute(path):
            return None if path is None else str(Path(path).expanduser().resolve())

        return dataclasses.replace(
            self,
            data=dataclasses.replace(self.data, train=absolute(self.data.train), val=absolute(self.data.val)),
            tokenizer=dataclasses.replace(
                self.tokenizer, dir=absolute(self.tokenizer.dir), vocab=absolute(self.tokenizer.vocab), merges=absolute(self.tokenizer.merges)
            ),
        )

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, validate: bool = True) -> TrainConfig:
        """Build from nested dicts (a TOML file); the model section becomes a ModelConfig (checked at once),
        `validate=False` skips the cross-section checks of `validate`."""
        if not isinstance(data, dict):
            raise ConfigError("train config must be a table of sections")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(unknown)} (known: {', '.join(sections)})")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if not isinstance(value, dict):
                raise ConfigError(f"config section [{name}] must be a table, got {value!r}")
            if name == "train":
                value = _upgrade_eval_batches(value)
            kwargs[name] = ModelConfig.from_dict(dict(value)) if name == "model" else _build_section(name, _SECTION_TYPES[name], value)
        config = cls(**kwargs)
        if validate:
            config.validate()
        return config

    def validate(self) -> None:
        """Reject settings that cannot work, naming the key (model fields are checked by ModelConfig)."""
        self.model_config()
        t, o, d = self.train, self.optim, self.data
        if not d.train:
            raise ConfigError("no training data: set data.train in the config or pass --train-data FILE")
        if sum(v is not None for v in (t.max_steps, t.max_tokens, t.max_minutes)) != 1:
            raise ConfigError("set exactly one of train.max_steps, train.max_tokens and train.max_minutes")
        for name in ("batch_size", "grad_accum_steps", "global_batch_size", "max_steps", "max_tokens", "eval_interval",
                     "eval_windows", "log_interval", "checkpoint_interval"):
            value = getattr(t, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {value}")
        if t.max_minutes is not None and not (math.isfinite(t.max_minutes) and t.max_minutes > 0):
            raise ConfigError(f"train.max_minutes must be a finite number > 0, got {t.max_minutes}")
        if t.max_minutes is not None and o.cosine_iters is not None:
            raise ConfigError("optim.cosine_iters counts steps; with train.max_minutes the cosine runs over the time budget: unset one")
        for name in ("lr_max", "lr_min", "weight_decay", "eps", "grad_clip"):
            value = getattr(o, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"optim.{name} must be a finite number >= 0, got {value}")
        if t.global_batch_size is not None:
            if t.grad_accum_steps != 1:
                raise ConfigError("set train.grad_accum_steps or train.global_batch_size, not both")
            if t.global_batch_size % t.batch_size:
                raise ConfigError(
                    f"train.global_batch_size ({t.global_batch_size}) is not a multiple of train.batch_size ({t.batch_size})"
                )
        _validate_optim_choices(o)
        if o.lr_min > o.lr_max:
            raise ConfigError(f"optim.lr_min ({o.lr_min}) is larger than optim.lr_max ({o.lr_max})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(o, name) < 1:
                raise ConfigError(f"optim.{name} must be in [0, 1), got {getattr(o, name)}")
        if o.warmup_iters < 0:
            raise ConfigError(f"optim.warmup_iters must be >= 0, got {o.warmup_iters}")
        if o.cosine_iters is not None and o.cosine_iters < o.warmup_iters:
            raise ConfigError(f"optim.cosine_iters ({o.cosine_iters}) is shorter than optim.warmup_iters ({o.warmup_iters})")
        if d.dtype is not None and d.dtype not in TOKEN_DTYPES:
            raise ConfigError(f"data.dtype must be {' or '.join(TOKEN_DTYPES)}, got {d.dtype!r}")
        if d.val_bytes_per_token is not None and not d.val_bytes_per_token > 0:
            raise ConfigError(f"data.val_bytes_per_token must be positive, got {d.val_bytes_per_token}")
        tok = self.tokenizer
        if (tok.vocab is None) != (tok.merges is None):
            raise ConfigError("tokenizer.vocab and tokenizer.merges go together: set both or neither")
        if tok.dir is not None and tok.vocab is not None:
            raise ConfigError("set tokenizer.dir or tokenizer.vocab + tokenizer.merges, not both")
        if t.wandb_mode not in ("online", "offline", "disabled"):
            raise ConfigError(f"train.wandb_mode must be online, offline or disabled, got {t.wandb_mode!r}")
        if t.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"train.device must be cpu, cuda, cuda:N or mps, got {t.device!r}")

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> TrainConfig:
        """A copy with `section.key=value` settings applied (values parsed as TOML, else a string)."""
        return TrainConfig.from_dict(apply_overrides(self.to_dict(), overrides))


OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


def _validate_optim_choices(o: OptimConfig) -> None:
    """The optimizer, schedule and z-loss settings of [optim] (ConfigError naming the key)."""
    if o.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name must be one of {', '.join(OPTIMIZERS)}; got {o.name!r}")
    if o.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}; got {o.schedule!r}")
    for name in ("muon_lr", "muon_weight_decay", "z_loss"):
        value = getattr(o, name)
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"optim.{name} must be a finite number >= 0, got {value}")
    if o.embedding_lr is not None and not (math.isfinite(o.embedding_lr) and o.embedding_lr >= 0):
        raise ConfigError(f"optim.embedding_lr must be a finite number >= 0 (or unset), got {o.embedding_lr}")
    if o.embedding_lr is not None and o.lr_max <= 0:
        raise ConfigError("optim.embedding_lr scales its rate by lr / lr_max: optim.lr_max must be > 0")
    if not 0 <= o.muon_momentum < 1:
        raise ConfigError(f"optim.muon_momentum must be in [0, 1), got {o.muon_momentum}")
    if o.muon_ns_steps < 1:
        raise ConfigError(f"optim.muon_ns_steps must be at least 1, got {o.muon_ns_steps}")
    if not 0 < o.decay_fraction <= 1:
        raise ConfigError(f"optim.decay_fraction must be in (0, 1], got {o.decay_fraction}")
    if o.decay_shape not in ("linear", "sqrt"):
        raise ConfigError(f"optim.decay_shape must be linear or sqrt, got {o.decay_shape!r}")
    if o.name == "muon" and o.lr_max <= 0:
        raise ConfigError("optim.name = muon scales its rate by lr / lr_max: optim.lr_max must be > 0")


def apply_overrides(data: dict, overrides: list[str] | dict[str, Any]) -> dict:
    """Nested config dicts with `section.key=value` settings applied (a new dict; `data` is unchanged).

    Setting one budget (max_steps / max_tokens / max_minutes) clears the others, and
    global_batch_size and grad_accum_steps replace each other, so a flag never leaves two of them set.
    """
    data = {section: dict(values) for section, values in data.items()}
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    items = overrides.items() if isinstance(overrides, dict) else (split_override(o) for o in overrides)
    for key, value in items:
        section, _, name = key.partition(".")
        if not name or section not in known:
            raise ConfigError(f"override {key!r} must look like section.key with a section of {', '.join(known)}")
        values = data.setdefault(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"config section [{section}] must be a table, got {values!r}")
        values[name] = value
        if key in _BUDGETS and value is not None:  # a new budget replaces the old one
            for other in _BUDGETS:
                if other != key:
                    values[other.partition(".")[2]] = None
        elif key == "train.eval_batches":  # the old spelling: eval_batches × batch_size windows
            data["train"] = _upgrade_eval_batches({**values, "eval_windows": None})
        elif key == "train.global_batch_size" and value is not None:
            values["grad_accum_steps"] = 1
        elif key == "train.grad_accum_steps" and value is not None:
            values["global_batch_size"] = None
    return data


_BUDGETS = ("train.max_steps", "train.max_tokens", "train.max_minutes")


def _upgrade_eval_batches(values: dict) -> dict:
    """Configs before eval_windows had `eval_batches`: that many batches of batch_size windows.
    Read as the same number of windows, so an old run resumes on the very same validation text."""
    if "eval_batches" not in values:
        return values
    values = dict(values)
    batches = values.pop("eval_batches")
    if batches is None:
        return values
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ConfigError(f"train.eval_batches (the old spelling of train.eval_windows / batch_size) must be an integer >= 1, got {batches!r}")
    batch_size = values.get("batch_size", RunConfig.batch_size)
    if values.get("eval_windows") is None and isinstance(batch_size, int):
        values["eval_windows"] = batches * batch_size
    return values


_SECTION_TYPES = {"data": DataConfig, "tokenizer": TokenizerConfig, "optim": OptimConfig, "train": RunConfig}


def _build_section(name: str, cls: type, values: dict):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(unknown)} (known: {', '.join(fields)})")
    return cls(**{key: _coerce(f"{name}.{key}", value, fields[key].type) for key, value in values.items()})


def _coerce(key: str, value, annotation: str):
    """Check a value against its field's type; ints are accepted where floats are expected."""
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{key} may not be empty")
    if "bool" in annotation:
        ok = isinstance(value, bool)
    elif "float" in annotation:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif "int" in annotation:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif "list" in annotation:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        want = annotation.replace(" | None", "")
        raise ConfigError(f"{key} must be {want}, got {value!r} ({type(value).__name__})")
    return value


def split_override(text: str) -> tuple[str, Any]:
    """'section.key=value' -> (key, value parsed as TOML); shared by config files' callers and --set."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    return key.strip(), parse_value(raw.strip())


def parse_value(raw: str) -> Any:
    """A flag's value as TOML (numbers, booleans, lists, quoted strings), else the bare string."""
    if raw.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
    """Read a TOML file (or start from defaults) and apply overrides."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputFileError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("train config must be a table of sections")
    if isinstance(data.get("train"), dict):  # an old file's eval_batches × its own batch_size, before flags change it
        data["train"] = _upgrade_eval_batches(data["train"])
    return TrainConfig.from_dict(apply_overrides(data, overrides or []))


def to_toml(config: TrainConfig) -> str:
    """Write a config back as TOML (None values are left out: they mean 'the default')."""
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")
