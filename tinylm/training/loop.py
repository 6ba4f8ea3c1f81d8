"""The training loop: a run folder in, a trained model, metrics, curves and checkpoints out.

A run folder holds `config.toml` (resolved), `checkpoint.pt` (latest, written atomically),
`metrics.jsonl`, `loss_vs_step.png`, `loss_vs_time.png` and the tokenizer (`vocab.json`,
`merges.txt`, `special_tokens.json`: the run folder is a tokenizer folder too). Everything that decides the next step — weights, AdamW moments, step, the batch
sampler's generator — is in the checkpoint, so a resumed CPU run is bit-identical to one that was
never stopped. Ctrl-C (or SIGTERM) finishes the current step, saves and returns; a NaN/inf loss
saves the last good state and raises TrainingDivergedError (on CUDA the check runs at log and
checkpoint steps, so the step never waits for the GPU: the last good state is then the last
checkpoint, see Trainer._check_window).

Under torchrun the same code trains data-parallel (tinylm.training.distributed): DDP, one shared
batch sampler sliced by rank, gradient accumulation (`train.grad_accum_steps` /
`train.global_batch_size`), and only rank 0 writes the run folder.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.errors import CheckpointError, ConfigError, DataError, DistributedError, TrainingDivergedError
from tinylm.progress import progress_bar
from tinylm.tokenizer.token_arrays import load_info
from tinylm.training.checkpoint import capture_rng_state, read_checkpoint, restore, restore_rng_state, save_checkpoint
from tinylm.training.config import TrainConfig
from tinylm.training.batches import check_tokens, eval_starts, load_tokens, token_byte_lengths
from tinylm.training.distributed import Distributed, configure_device, rank_batches
from tinylm.training.evaluate import evaluate_bpb
from tinylm.training.optim import (
    AdamW,
    Muon,
    budget_lr,
    clip_grad_norm,
    cosine_lr,
    cross_entropy,
    cross_entropy_with_z_loss,
    wsd_budget_lr,
    wsd_lr,
)
from tinylm.training.run_dir import RunDir


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    interrupted: bool
    train_loss: float | None
    val_loss: float | None
    val_bpb: float | None
    rank: int = 0  # under torchrun only rank 0 reports
    world_size: int = 1
    local_world_size: int = 1  # processes per node


class Trainer:
    """One run. `run()` trains; the step pieces are methods so benchmarks time the same code."""

    def __init__(self, config: TrainConfig, resume: bool = False, on_step: Callable[[int, dict | None], bool | None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        """Everything a run needs, in order; nothing is written before every check has passed.

        `on_step(step, record)` is called after each step (record: the metrics line, or None) and
        stops the run by returning True. `clock` (seconds) measures the run's wall-clock and so a
        `max_minutes` budget; tests pass a fake one.
        """
        config.validate()
        self.config = config = config.with_absolute_paths()
        self.on_step, self.clock = on_step, clock
        self.run_dir = RunDir(config.train.out_dir)
        self.out, self.ckpt_path = self.run_dir.path, self.run_dir.checkpoint
        resume = self._check_resume(resume)
        self.model_config = config.model_config()
        self.dist, self.device = self._join_processes()
        self.train_tokens, self.val_tokens = self._open_token_files()
        self.tokenizer = self._load_tokenizer(resume)
        if self.dist.is_main:  # only rank 0 writes in the run folder, and only now: a bad setting leaves no empty folder
            self.run_dir.prepare()
        self.val_token_bytes, self.val_bytes_per_token = self._val_bytes()
        self.model, self.ddp = self._build_model()
        self.optimizer = self._make_optimizer()
        self._start_progress()
        if resume:
            self._resume()
        # the step the run ends at: a token budget counts the tokens already trained (None: the clock decides)
        self.total_steps = config.steps(self.dist.world_size, self.step, self.tokens_seen)
        if self.dist.is_main:
            self._write_run_files()

    # --- setup -------------------------------------------------------------------------------
    def _check_resume(self, resume: bool) -> bool:
        """Whether to continue from a checkpoint; an existing run needs --resume, and --resume a run."""
        has_checkpoint = self.ckpt_path.exists()
        if resume and not has_checkpoint:
            if not self.run_dir.config.exists():
                raise CheckpointError(f"nothing to resume: no {self.ckpt_path.name} in {self.out}")
            return False  # the run was stopped before its first checkpoint: continuing it is starting it
        if not resume and has_checkpoint:
            raise ConfigError(
                f"{self.out} already holds a run ({self.ckpt_path.name}); continue it with --resume {self.out} or choose another out_dir"
            )
        return resume

    def _join_processes(self) -> tuple[Distributed, torch.device]:
        """This process's place in the run and its device (torchrun: the process group is joined here)."""
        requested = self.config.train.device
        if torch.device(requested).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train.device is cuda but no CUDA device is available")
        dist, device = Distributed.from_env(requested)  # a cuda device becomes cuda:LOCAL_RANK
        configure_device(device, self.config.train.tf32)
        return dist, device

    def _open_token_files(self):
        """(training tokens, validation tokens or None), memory-mapped and checked against the model."""
        data, ctx, vocab = self.config.data, self.model_config.context_length, self.model_config.vocab_size
        train = _open_tokens(data.train, data.dtype, vocab, ctx, "training")
        val = _open_tokens(data.val, data.dtype, vocab, ctx, "validation") if data.val else None
        return train, val

    def _build_model(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(model, what the step calls): the seeded TransformerLM, and its DDP wrapper under torchrun."""
        from tinylm.model.transformer import TransformerLM

        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(self.config.train.seed)
            # under DDP, torch.compile goes around the DDP wrapper, not inside it (Distributed.wrap)
            built = self.model_config.replace(compile=False) if self.dist.enabled else self.model_config
            model = TransformerLM(built).to(self.device)
        return model, self.dist.wrap(model, self.device, compile=self.model_config.compile)

    def _start_progress(self) -> None:
        """Step, tokens and clock of a new run (a resume then loads the saved ones)."""
        world = self.dist.world_size
        self.generator = torch.Generator().manual_seed(self.config.train.seed)
        self.step = 0
        self.saved_step = None  # step of the checkpoint on disk, when there is one
        self.elapsed_before = 0.0
        self._t0 = self.clock()
        self.accum_steps = self.config.grad_accum_steps(world)  # micro-batches per step on this process
        self.tokens_per_step = self.config.global_batch_size(world) * self.model_config.context_length  # all processes
        self.tokens_seen = 0  # training tokens of every step so far, over all processes and resumes
        budget = self.config.train.max_minutes
        self.budget_seconds = None if budget is None else budget * 60.0  # wall-clock budget, if that ends the run
        self.warmup_end = None  # wall-clock budget: the elapsed fraction at which warm-up ended
        self.check_every_step = self.device.type != "cuda"  # CUDA: NaN check at log intervals (no sync per step)

    def _write_run_files(self) -> None:
        """config.toml (what this run uses), metrics up to the checkpoint, the tokenizer copy."""
        self.run_dir.keep_metrics_through(self.step)
        self.run_dir.write_config(self.config)
        if self.tokenizer is not None:
            self.run_dir.save_tokenizer(self.tokenizer)

    def _make_optimizer(self) -> AdamW:
        """AdamW with weight decay on matrices only (gains left undecayed); with optim.name = "muon",
        the blocks' 2-D weights (attention and feed-forward projections) go to Muon instead, and the
        embeddings, LM head and gains stay with AdamW. With optim.embedding_lr set, the token embedding
        is a group of its own (role "embedding") at that peak rate (modded-nanogpt trains its
        embedding at a far higher rate than its head: github.com/KellerJordan/modded-nanogpt)."""
        o = self.config.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        muon = set(map(id, _muon_params(self.model))) if o.name == "muon" else set()
        embedding = getattr(getattr(self.model, "token_embeddings", None), "weight", None) if o.embedding_lr is not None else None
        own = muon | ({id(embedding)} if embedding is not None else set())
        groups = [
            {"params": [p for p in params if _decayed(p) and id(p) not in own], "weight_decay": o.weight_decay},
            {"params": [p for p in params if not _decayed(p)], "weight_decay": 0.0},
        ]
        if embedding is not None:  # its own peak rate (set_lr scales it); decayed like the other matrices
            groups.append({"params": [embedding], "weight_decay": o.weight_decay, "role": "embedding"})
        if muon:
            groups.append({"params": [p for p in params if id(p) in muon], "use_muon": True, "lr": o.muon_lr,
                           "weight_decay": o.muon_weight_decay, "momentum": o.muon_momentum, "ns_steps": o.muon_ns_steps})
        groups = [g for g in groups if g["params"]]
        if o.name == "muon":
            return Muon(groups, lr=o.lr_max, betas=(o.beta1, o.beta2), eps=o.eps)
        return AdamW(groups, lr=o.lr_max, betas=(o.beta1, o.beta2), eps=o.eps)

    def _apply_optim_settings(self) -> None:
        """Put the config's betas, eps and weight decay into the optimizer's groups.

        Loading a checkpoint's optimizer state also loads the hyperparameters it was saved with;
        a resumed run whose config changed them (`--set optim.beta2=...`) must train with the new
        values, as its config.toml says. (The learning rate is set before every step.)
        """
        o = self.config.optim
        for group in self.optimizer.param_groups:
            group["betas"] = (o.beta1, o.beta2)
            group["eps"] = o.eps
            group["weight_decay"] = o.weight_decay if all(_decayed(p) for p in group["params"]) else 0.0
            if group.get("use_muon"):
                group.update(weight_decay=o.muon_weight_decay, momentum=o.muon_momentum, ns_steps=o.muon_ns_steps)

    def _load_tokenizer(self, resume: bool):
        """The run's tokenizer: the copy in the run folder when resuming, else the configured one."""
        tokenizer = self.run_dir.load_tokenizer() if resume else None
        if tokenizer is None:
            tokenizer = self.config.tokenizer.load()
        if tokenizer is not None and tokenizer.vocab_size > self.model_config.vocab_size:
            raise ConfigError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but model.vocab_size is {self.model_config.vocab_size}"
            )
        return tokenizer

    def _val_bytes(self) -> tuple[np.ndarray | None, float | None]:
        """What bits per byte divides by: (bytes of each token id, None) from the tokenizer, so each
        predicted token counts its own bytes; else (None, mean bytes per token) from the config or the
        file's `tinylm encode` sidecar; (None, None) without either. A configured
        data.val_bytes_per_token wins over everything."""
        if self.val_tokens is None:
            return None, None
        if self.config.data.val_bytes_per_token is not None:
            return None, self.config.data.val_bytes_per_token
        if self.tokenizer is not None:
            return token_byte_lengths(self.tokenizer.vocab, self.model_config.vocab_size), None
        info = load_info(self.config.data.val)
        if info is not None and info.num_tokens == len(self.val_tokens):
            return None, info.bytes_per_token
        return None, None

    def _resume(self) -> None:
        payload = read_checkpoint(self.ckpt_path)
        restore(payload, self.model, self.optimizer)
        self._apply_optim_settings()
        self._check_unchanged(payload)
        try:
            self.generator.set_state(payload["data"]["generator"])
            restore_rng_state(payload["rng"])
            self.elapsed_before = float(payload["progress"]["wall_clock"])
        except (KeyError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{self.ckpt_path} lacks the run state needed to resume ({exc})") from None
        self.step = self.saved_step = payload["iteration"]
        saved_batch = payload["progress"].get("global_batch")
        ctx = self.model_config.context_length
        saved_tokens = payload["progress"].get("tokens")
        if saved_tokens is None:  # checkpoints before tokens were saved: all steps ran at the saved batch
            saved_tokens = self.step * (saved_batch * ctx if saved_batch is not None else self.tokens_per_step)
        self.tokens_seen = int(saved_tokens)
        self.warmup_end = payload["progress"].get("warmup_end")
        if self.dist.is_main and saved_batch is not None and saved_batch != self.tokens_per_step // self.model_config.context_length:
            print(f"warning: the run trained with a global batch of {saved_batch} sequences and continues with "
                  f"{self.tokens_per_step // self.model_config.context_length}; set train.global_batch_size to keep it "
                  "when the number of processes changes", file=sys.stderr)

    def _check_unchanged(self, payload: dict) -> None:
        """Refuse settings a resumed run cannot honour, rather than write them into config.toml unused."""
        saved = (payload.get("train_config") or {}).get("train", {})
        if "seed" in saved and saved["seed"] != self.config.train.seed:
            raise ConfigError(
                f"train.seed is {self.config.train.seed} but the run was started with seed {saved['seed']}: a resumed run "
                "continues its initialisation and batch order from the checkpoint, so the seed cannot change"
            )

    # --- one step, in the pieces the benchmark times ---------------------------------------------
    def set_lr(self) -> float:
        """Set and return the learning rate of the step about to run (step number self.step + 1).

        Steps are numbered from 1, so the first warm-up step runs at lr_max / warmup_iters (never
        0), step warmup_iters reaches lr_max, and the last step of the cosine runs at lr_min
        (`optim.cosine_lr`, the course's formula, evaluated at the step number). With a wall-clock
        budget the cosine runs over the elapsed fraction of the budget instead (`budget_lr`).
        """
        o = self.config.optim
        step = self.step + 1
        wsd = o.schedule == "wsd"
        if self.budget_seconds is None:
            cosine_iters = o.cosine_iters if o.cosine_iters is not None else self.total_steps
            if wsd:
                lr = wsd_lr(step, o.lr_max, o.lr_min, o.warmup_iters, cosine_iters, o.decay_fraction, o.decay_shape)
            else:
                lr = cosine_lr(step, o.lr_max, o.lr_min, o.warmup_iters, cosine_iters)
        else:  # a wall-clock budget: the decay runs over the rest of the budget from the end of warm-up
            fraction = self.budget_fraction()
            if self.warmup_end is None and step >= o.warmup_iters:  # saved in the checkpoint: resumes keep it
                self.warmup_end = fraction
            start = self.warmup_end or 0.0
            if wsd:
                progress = (fraction - start) / (1.0 - start) if start < 1.0 else 1.0
                lr = wsd_budget_lr(step, progress, o.lr_max, o.lr_min, o.warmup_iters, o.decay_fraction, o.decay_shape)
            else:
                lr = budget_lr(step, fraction, o.lr_max, o.lr_min, o.warmup_iters, start)
        # Muon and a separately-rated embedding follow the same schedule, scaled to their own peaks
        muon_lr = lr * o.muon_lr / o.lr_max if o.lr_max > 0 else 0.0
        embedding_lr = lr * o.embedding_lr / o.lr_max if o.embedding_lr is not None else lr
        for group in self.optimizer.param_groups:
            group["lr"] = muon_lr if group.get("use_muon") else embedding_lr if group.get("role") == "embedding" else lr
        return lr

    def budget_fraction(self) -> float:
        """Elapsed share of the wall-clock budget (the largest over processes, so all agree), 0 without one."""
        if self.budget_seconds is None:
            return 0.0
        return self.dist.max(self.wall_clock()) / self.budget_seconds

    def finished(self) -> bool:
        """Whether the budget (steps, tokens or wall-clock) is spent."""
        if self.total_steps is not None:
            return self.step >= self.total_steps
        return self.budget_fraction() >= 1.0

    def draw_batch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This process's micro-batches (inputs, targets) of the next global batch (distributed.rank_batches)."""
        ctx, d = self.model_config.context_length, self.dist
        return rank_batches(self.train_tokens, self.config.train.batch_size, self.accum_steps, ctx, self.device,
                            self.generator, d.rank, d.world_size)

    def forward_backward(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Gradients of the mean loss over the micro-batches; DDP averages them over processes on the last one."""
        n, total, z_loss = len(batches), None, self.config.optim.z_loss
        for i, (inputs, targets) in enumerate(batches):
            with self.dist.sync_gradients(self.ddp, sync=i == n - 1):
                objective, loss = self.loss(self.ddp(inputs), targets, z_loss)  # loss: the CE alone
                (objective / n if n > 1 else objective).backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total / n if n > 1 else total

    @staticmethod
    def loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(what is differentiated, the cross-entropy that is logged): the plain cross-entropy twice
        without a z-loss (today's arithmetic), else CE + z_loss · mean(logsumexp²) and the CE."""
        if z_loss == 0:
            loss = cross_entropy(logits, targets)
            return loss, loss
        return cross_entropy_with_z_loss(logits, targets, z_loss)

    def clip(self) -> torch.Tensor:
        clip = self.config.optim.grad_clip
        if clip > 0:
            return clip_grad_norm(self.model.parameters(), clip)
        return clip_grad_norm(self.model.parameters(), math.inf)

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # --- evaluation, checkpoints, logging ---------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation loss and bits per byte on the run's fixed windows (`train.eval_windows`,
        evenly spaced, the same every time and for every batch size), as metrics.jsonl fields."""
        if self.val_tokens is None:
            return {}
        ctx = self.model_config.context_length
        starts = eval_starts(len(self.val_tokens), ctx, self.config.train.eval_windows)
        return evaluate_bpb(self.model, self.val_tokens, starts, ctx, self.config.train.batch_size, self.device,
                            self.val_token_bytes, self.val_bytes_per_token, self.dist).as_record()

    def save(self, generator_state: torch.Tensor | None = None) -> None:
        """Write the checkpoint (rank 0 only: every rank holds the same state)."""
        self.saved_step = self.step
        if not self.dist.is_main:
            return
        save_checkpoint(
            self.model,
            self.optimizer,
            self.step,
            self.ckpt_path,
            model_config=self.model_config.to_dict(),
            train_config=self.config.to_dict(),
            rng=capture_rng_state(),
            data={"generator": generator_state if generator_state is not None else self.generator.get_state()},
            progress={"wall_clock": self.wall_clock(), "tokens": self.tokens_seen, "warmup_end": self.warmup_end,
                      "global_batch": self.tokens_per_step // self.model_config.context_length},
        )

    def wall_clock(self) -> float:
        return self.elapsed_before + (self.clock() - self._t0)

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train until the budget is spent or a stop is asked for (Ctrl-C, SIGTERM, on_step); save; report."""
        self._t0 = self.clock()
        main = self.dist.is_main  # only rank 0 logs, plots and shows progress
        sink = _MetricSink(self.run_dir.metrics, self.config) if main else _NullSink()
        # Signal handlers last: nothing that can fail stands between installing and restoring them.
        stop = _StopRequest(repeat_window=2.0 if self.dist.enabled else 0.0)
        restore_handlers = stop.install()
        bar = _RunBar(self, disable=not (self.config.train.progress and main))
        self._window = MetricWindow(self.step, self.device)
        self._last_train, self._last_val = None, {}
        completed = False
        try:
            done, stopping = self.finished(), False
            while not (done or stopping):
                lr, grad_norm = self._train_step(sink)
                bar.update()
                done = self.finished()  # once per step: a wall-clock budget is read here only
                record = self._log_evaluate_save(sink, lr, grad_norm, last_step=done)
                if record is not None:
                    bar.set_postfix(loss=f"{record['train_loss']:.3f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
                if self.on_step is not None and self.on_step(self.step, record):
                    stop.requested = True
                stopping = self.dist.agree(stop.requested)[0]  # every process stops after the same step
            self._check_window(self._window)
            self.save()
            completed = True
            return self._result(not self.finished(), self._last_train, self._last_val)
        except RuntimeError as exc:
            if self.dist.is_peer_loss(exc):
                error = self._peer_lost(exc)
                print(f"error: {error}", file=sys.stderr, flush=True)  # now: the launcher may SIGTERM us any moment
                error.reported = True
                raise error from exc
            raise
        finally:
            try:
                bar.close()
                sink.close()
                self._leave_processes(completed)
                if main:
                    self._plot(completed)
            finally:
                restore_handlers()

    def _train_step(self, sink) -> tuple[float, torch.Tensor]:
        """One optimizer step: (its learning rate, the gradient norm before clipping).

        CPU: a non-finite loss or gradient norm is caught before the update, the state before this
        step is saved and TrainingDivergedError raised (CUDA: `_check_window` at log steps).
        """
        lr = self.set_lr()
        generator_state = self.generator.get_state()
        loss = self.forward_backward(self.draw_batch())
        grad_norm = self.clip()
        if self.check_every_step and self.dist.agree(not bool(torch.isfinite(loss) & torch.isfinite(grad_norm)))[0]:
            if self._window.steps:  # the curve up to the last good step
                sink.write(self.record(self._window, lr, self._window.grad_norm))
            self._diverged(float(loss), float(grad_norm), lr, generator_state)
        self.optimizer_step()
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        self._window.add(loss, grad_norm)
        return lr, grad_norm

    def _log_evaluate_save(self, sink, lr: float, grad_norm: torch.Tensor, last_step: bool) -> dict | None:
        """At log / eval / checkpoint steps: the metrics record (returned), the evaluation, the checkpoint."""
        cfg = self.config.train
        do_eval = self.step % cfg.eval_interval == 0 or last_step
        do_log = self.step % cfg.log_interval == 0 or do_eval
        do_save = self.step % cfg.checkpoint_interval == 0 and not last_step
        if do_log or do_save:
            self._check_window(self._window)
        record = None
        if do_log:
            record = self.record(self._window, lr, grad_norm)
            self._last_train = record["train_loss"]
            if do_eval:
                self._last_val = self.evaluate()
                record.update(self._last_val)
            sink.write(record)
            self._window = MetricWindow(self.step, self.device)
        if do_save:
            self.save()
        return record

    def _leave_processes(self, completed: bool) -> None:
        """Leave the process group (torchrun), after dropping the DDP wrapper.

        The wrapper goes first: its reducer holds the process group and the last all-reduce's work
        and tensors. Freed here, while the interpreter is whole, they cannot be destroyed during
        interpreter shutdown, where a gloo object's C++ destructor aborts the finished process
        (`terminate called without an active exception`, SIGABRT: torchrun then reports a failure).
        Called while our signal handler is still in place: a late signal only sets a flag.
        """
        self.ddp = self.model
        self.dist.close(together=completed)

    def _plot(self, completed: bool) -> None:
        """The learning curves; a failing plot must not hide an error already on its way out."""
        try:
            self.run_dir.plot()
        except OSError:
            if completed:
                raise

    def record(self, window: MetricWindow, lr: float, grad_norm: torch.Tensor) -> dict:
        """One metrics.jsonl line for the steps since the last one (reads the device: a sync)."""
        seconds = max(time.perf_counter() - window.start, 1e-9)
        return {
            "step": self.step,
            "tokens": self.tokens_seen,
            "wall_clock": round(self.wall_clock(), 3),
            "train_loss": float(self.dist.mean(window.loss_sum)) / window.steps,  # over all processes
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens_per_s": round((self.step - window.start_step) * self.tokens_per_step / seconds, 1),
        }

    def _diverged(self, loss: float, grad_norm: float, lr: float, generator_state: torch.Tensor) -> None:
        """Keep the last state whose losses and gradients were all finite, then stop with advice."""
        self.optimizer.zero_grad(set_to_none=True)
        self.save(generator_state)
        what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {grad_norm}"
        raise TrainingDivergedError(
            f"{what} at step {self.step + 1} (lr {lr:.3g}); the last good state (step {self.step}) is saved in "
            f"{self.ckpt_path}. Lower optim.lr_max or lengthen optim.warmup_iters, then continue with "
            f"`tinylm train --resume {self.out} --set optim.lr_max=...`"
        )

    def _check_window(self, window: MetricWindow) -> None:
        """CUDA: were the losses and gradient norms since the last check all finite? (reads the device)

        The GPU step never waits for the device, so a NaN is seen here, at the next log or checkpoint
        step, after the optimizer has applied it. No checkpoint is written before this check passes,
        so the checkpoint on disk is always a finite state: the last good one. (CPU checks each step.)
        """
        if self.check_every_step or not window.steps:
            return
        if self.dist.agree(not bool(window.finite))[0]:
            self.optimizer.zero_grad(set_to_none=True)
            kept = f"the last good checkpoint (step {self.saved_step})" if self.saved_step is not None else "no checkpoint"
            raise TrainingDivergedError(
                f"loss or gradient norm became non-finite between steps {window.start_step + 1} and {self.step} "
                f"(checked at log intervals on {self.device.type}); {kept} is in {self.ckpt_path}, nothing later was saved. "
                f"Lower optim.lr_max or lengthen optim.warmup_iters, then continue with "
                f"`tinylm train --resume {self.out} --set optim.lr_max=...`"
            )

    def _peer_lost(self, exc: RuntimeError) -> DistributedError:
        """The error a process reports when another one died or the network failed mid-step."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kept = (f"the last checkpoint (step {self.saved_step}) in {self.ckpt_path} is complete"
                if self.saved_step is not None else "no checkpoint was written yet")
        return DistributedError(
            f"process {self.dist.rank} of {self.dist.world_size} stopped at step {self.step + 1}: another process "
            f"died or lost contact ({first[:200]}). Nothing was saved after that; {kept}. Continue with "
            f"`torchrun --nproc_per_node N -m tinylm train --resume {self.out}` (any number of processes)"
        )

    def _result(self, interrupted: bool, train_loss, val: dict) -> TrainResult:
        return TrainResult(self.out, self.step, interrupted, train_loss, val.get("val_loss"), val.get("val_bpb"), self.dist.rank,
                           self.dist.world_size, self.dist.local_world_size)


class MetricWindow:
    """Train loss and throughput accumulated between two metrics records, kept on the device."""

    def __init__(self, step: int, device: torch.device):
        self.start, self.start_step, self.steps = time.perf_counter(), step, 0
        self.loss_sum = torch.zeros((), device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)  # all losses and norms so far finite
        self.grad_norm = None

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.loss_sum += loss
        self.finite &= torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.steps += 1
        self.grad_norm = grad_norm


def _muon_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The 2-D weights inside the blocks (attention and feed-forward projections): what Muon trains.
    Embeddings, positions, the LM head and every gain or bias stay with AdamW."""
    blocks = getattr(model, "layers", [])
    return [p for p in blocks.parameters() if p.ndim == 2 and p.requires_grad] if len(blocks) else []


def _decayed(p: torch.Tensor) -> bool:
    """Weight decay applies to matrices (embeddings, projections), not to the norms' gains."""
    return p.ndim >= 2


class _RunBar:
    """The progress bar of a run: steps of a step or token budget, seconds of a wall-clock budget."""

    def __init__(self, trainer: Trainer, disable: bool):
        self.trainer = trainer
        self.timed = trainer.total_steps is None
        if self.timed:
            total, initial, unit = round(trainer.budget_seconds), round(min(trainer.wall_clock(), trainer.budget_seconds)), "s"
        else:
            total, initial, unit = trainer.total_steps, trainer.step, "step"
        self.bar = progress_bar(total=total, initial=initial, disable=disable, unit=unit, dynamic_ncols=True)

    def update(self) -> None:
        if self.timed:
            self.bar.update(max(0, min(self.bar.total, round(self.trainer.wall_clock())) - self.bar.n))
        else:
            self.bar.update(1)

    def set_postfix(self, **kwargs) -> None:
        self.bar.set_postfix(**kwargs)

    def close(self) -> None:
        self.bar.close()


def _open_tokens(path: str, dtype: str | None, vocab_size: int, context_length: int, role: str):
    """Memmap a token file; a raw .bin's dtype comes from the config, else its sidecar, else uint16."""
    info = load_info(path) if Path(path).exists() else None
    if dtype is None:
        dtype = info.dtype if info is not None else "uint16"
    elif info is not None and info.format == "bin" and info.dtype != dtype:
        raise DataError(f"{role} token file {path} holds {info.dtype} ids (its `tinylm encode` sidecar says so), not {dtype}: fix data.dtype")
    tokens = load_tokens(path, dtype)
    check_tokens(tokens, vocab_size, context_length, f"{role} token file {path}")
    return tokens


def train(config: TrainConfig, resume: bool = False, on_step=None) -> TrainResult:
    """Train (or continue) the run described by `config`; see Trainer."""
    return Trainer(config, resume=resume, on_step=on_step).run()


class _StopRequest:
    """Turns the first Ctrl-C / SIGTERM into 'stop after this step'; a second Ctrl-C stops at once.

    Under a launcher (torchrun, several processes) a second SIGINT within `repeat_window` seconds
    of the first counts as the same keypress: torch < 2.2's torchrun left its workers in the
    terminal's process group, so they got the terminal's SIGINT and then torchrun's forwarded copy,
    which must not abort the save the first one asked for. (torch >= 2.2 starts each worker in a
    session of its own and forwards exactly one signal; there the window changes nothing.) A single
    process has no window: two quick Ctrl-Cs stop at once.
    """

    def __init__(self, repeat_window: float = 0.0):
        self.requested = False  # also set by the on_step hook
        self.repeat_window = repeat_window
        self._first_signal = None  # time of the first signal received

    def __call__(self, signum, frame):
        now = time.monotonic()
        if self._first_signal is None:
            self._first_signal = now
        elif signum == signal.SIGINT and now - self._first_signal >= self.repeat_window:
            raise KeyboardInterrupt
        self.requested = True

    def install(self) -> Callable[[], None]:
        """Handle SIGINT and SIGTERM; returns the function that puts the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore_previous():
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore_previous


class _NullSink:
    """What processes other than rank 0 log to."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class _MetricSink:
    """metrics.jsonl (one flushed line per record) and, when asked for, Weights & Biases."""

    def __init__(self, path: Path, config: TrainConfig):
        self.file = open(path, "a", encoding="utf-8")
        self.wandb_run = None
        if config.train.wandb:
            try:
                import wandb
            except ImportError:
                self.file.close()
                raise ConfigError("train.wandb is on but wandb is not installed: pip install 'tinylm[wandb]'") from None
            self.wandb_run = wandb.init(
                project=config.train.wandb_project,
                mode=config.train.wandb_mode,
                dir=str(path.parent),
                name=path.parent.name,
                config=config.to_dict(),
            )

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(record, step=record["step"])

    def close(self) -> None:
        self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
