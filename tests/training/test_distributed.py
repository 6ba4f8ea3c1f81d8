"""Data-parallel training on CPU: torchrun with gloo, gradient accumulation, a killed rank, resume.

The torchrun tests start `python -m torch.distributed.run --standalone` (free port, so parallel
test runs do not collide) with 2 CPU processes running the real `tinylm train` command.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch

from tinylm.errors import ConfigError, TrainingDivergedError
from tinylm.training import loop as loop_mod
from tinylm.training.checkpoint import read_checkpoint
from tinylm.training.config import TrainConfig, load_config, to_toml
from tinylm.training.distributed import rank_batches
from tinylm.training.loop import Trainer, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _torchrun(nproc: int, *args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "tinylm", "train", "--no-progress", *map(str, args)]


def _close(a: dict, b: dict, atol=2e-5):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- batches and accumulation (one process) ---------------------------------------------------------
def test_ranks_and_micro_batches_split_one_global_batch():
    tokens = np.arange(1000, dtype=np.uint16)

    def draw(micro, accum, rank, world):
        return rank_batches(tokens, micro, accum, 8, torch.device("cpu"), torch.Generator().manual_seed(3), rank, world)

    whole = draw(8, 1, 0, 1)[0][0]  # one process, batch 8
    parts = [x for rank in range(2) for x, _ in draw(2, 2, rank, 2)]  # 2 processes × 2 micro-batches of 2
    assert torch.equal(torch.cat(parts), whole)
    from tinylm.training.batches import get_batch  # one process, no accumulation: exactly get_batch's draw

    assert torch.equal(get_batch(tokens, 8, 8, "cpu", torch.Generator().manual_seed(3))[0], whole)


def test_global_batch_size_sets_the_accumulation(make_config):
    config = make_config(**{"train.batch_size": 2, "train.global_batch_size": 8, "train.max_tokens": 16 * 8 * 5})
    assert [config.grad_accum_steps(w) for w in (1, 2, 4)] == [4, 2, 1]
    assert config.steps(1) == config.steps(4) == 5  # the token budget counts the global batch
    with pytest.raises(ConfigError, match="not a multiple of train.batch_size × processes"):
        config.grad_accum_steps(3)
    data = config.to_dict()
    data["train"]["grad_accum_steps"] = 2
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig.from_dict(data)
    assert config.with_overrides({"train.grad_accum_steps": 2}).train.global_batch_size is None  # a flag replaces the other
    plain = make_config(**{"train.batch_size": 2, "train.grad_accum_steps": 3})
    assert plain.global_batch_size(2) == 12


def test_accumulating_micro_batches_equals_one_big_batch(make_config, tmp_path):
    big = train(make_config(**{"train.batch_size": 8, "train.out_dir": str(tmp_path / "big")}))
    acc = train(make_config(**{"train.batch_size": 2, "train.grad_accum_steps": 4, "train.out_dir": str(tmp_path / "acc")}))
    _close(read_checkpoint(big.out_dir)["model"], read_checkpoint(acc.out_dir)["model"])
    a, b = _records(big.out_dir), _records(acc.out_dir)
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b] == [8 * 16 * s for s in range(1, 9)]
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], abs=1e-5)


def test_nan_check_at_log_intervals_keeps_the_last_good_checkpoint(make_config, monkeypatch):
    """The CUDA path (no per-step sync), run on CPU: the NaN is seen at the next log step."""
    calls = {"n": 0}
    real = loop_mod.cross_entropy

    def poisoned(logits, targets):
        calls["n"] += 1
        return real(logits, targets) * (float("nan") if calls["n"] == 6 else 1.0)

    monkeypatch.setattr(loop_mod, "cross_entropy", poisoned)
    config = make_config(**{"train.log_interval": 4, "train.checkpoint_interval": 4, "train.eval_interval": 100})
    trainer = Trainer(config)
    trainer.check_every_step = False
    with pytest.raises(TrainingDivergedError, match=r"between steps 5 and 8 .*last good checkpoint \(step 4\)"):
        trainer.run()
    payload = read_checkpoint(config.train.out_dir)
    assert payload["iteration"] == 4 and all(torch.isfinite(v).all() for v in payload["model"].values())
    assert [r["step"] for r in _records(trainer.out)] == [4]


_READS = ("item", "__bool__", "__float__", "__int__", "__index__", "__format__", "__array__", "tolist", "cpu", "numpy")
_STEP_CODE = ("tinylm/training/loop.py", "tinylm/training/optim.py", "tinylm/training/distributed.py", "tinylm/model/")
_HOST_BY_DESIGN = ("tinylm/training/batches.py", "rank_batches")  # batches are drawn on the host, then sent non-blocking


def _read_site(depth: int = 2) -> str | None:
    """Where in the step's own code a tensor is being read to the host, or None (not the step, or batch drawing)."""
    frame = sys._getframe(depth)
    while frame is not None:
        where = frame.f_code.co_filename.replace(os.sep, "/")
        if any(part in where for part in _HOST_BY_DESIGN) or frame.f_code.co_name == "rank_batches":
            return None
        if any(part in where for part in _STEP_CODE):
            return f"{where.rsplit('/', 1)[-1]}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def test_the_gpu_path_reads_the_device_only_at_log_and_checkpoint_steps(make_config, monkeypatch):
    """Every tensor → host read made by the step, counted per step on the CUDA code path (run on CPU).

    On a GPU each such read waits for the device. Counted: .item(), bool(), float(), int(), format(),
    np.asarray(), .tolist(), .cpu(), .numpy() and .to("cpu"), made anywhere below the loop, the model,
    the loss, clipping, AdamW or the process-group helpers (the whole stack is walked, so a read
    inside torch on their behalf counts too). Batches are drawn on the host by design (training.batches)
    and are not counted. The multi-tensor (foreach) AdamW and clipping and bf16 autocast run as on a GPU.
    """
    from tinylm.training import optim as optim_mod

    reads, pending = {}, []

    def counting(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            site = _read_site()
            if site is not None:
                pending.append(f"{name} at {site}")
            return real(self, *args, **kwargs)

        return read

    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if str(target) == "cpu" and (site := _read_site()) is not None:
            pending.append(f"to('cpu') at {site}")
        return real_to(self, *args, **kwargs)

    config = make_config(**{"train.max_steps": 12, "train.log_interval": 4, "train.checkpoint_interval": 6,
                            "train.eval_interval": 100, "model.autocast": "bf16"})
    trainer = Trainer(config)
    trainer.check_every_step = False  # what a CUDA device sets
    monkeypatch.setattr(optim_mod, "_use_foreach", lambda flag, tensors: True)  # what CUDA parameters choose

    def on_step(step, record):
        reads[step] = list(pending)
        pending.clear()

    for name in _READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    monkeypatch.setattr(torch.Tensor, "to", to)
    trainer.on_step = on_step
    trainer.run()
    monkeypatch.undo()
    quiet = [s for s in range(1, 12) if s % 4 and s % 6]  # neither a log nor a checkpoint step
    assert quiet and all(reads[s] == [] for s in quiet), {s: reads[s] for s in quiet if reads[s]}
    assert reads[4] and reads[6]  # the reads happen where they should (so the counter works)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_between_log_intervals_never_synchronize(make_config):
    """The same property on a real GPU: torch's sync debug mode turns any synchronizing call into an error."""
    config = make_config(**{"train.max_steps": 8, "train.log_interval": 4, "train.checkpoint_interval": 100,
                            "train.eval_interval": 100, "train.device": "cuda"})
    trainer = Trainer(config)

    def on_step(step, record):  # the next step must not synchronize unless it is a log step
        torch.cuda.set_sync_debug_mode("error" if (step + 1) % 4 and step < 8 else "default")

    trainer.on_step = on_step
    try:
        trainer.run()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- torchrun, 2 gloo processes ----------------------------------------------------------------------------
@pytest.fixture
def config_file(make_config, tmp_path):
    def write(**overrides):
        config = make_config(**{"train.batch_size": 2, "train.global_batch_size": 8, **overrides})
        path = tmp_path / "cfg.toml"
        path.write_text(to_toml(config))
        return path, config

    return write


def test_two_processes_reach_the_parameters_of_one(config_file, tmp_path):
    path, config = config_file(**{"train.max_steps": 6, "train.eval_interval": 3})
    proc = subprocess.run(_torchrun(2, "--config", path, "--out", tmp_path / "two"), env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 6 steps") == 1  # only rank 0 reports
    one = train(config.with_overrides({"train.out_dir": str(tmp_path / "one")}))  # 1 process, 4 micro-batches
    two = read_checkpoint(tmp_path / "two")
    assert two["iteration"] == 6 and two["model"].keys() == read_checkpoint(one.out_dir)["model"].keys()
    _close(read_checkpoint(one.out_dir)["model"], two["model"])
    _close(read_checkpoint(one.out_dir)["optimizer"]["state"][0], two["optimizer"]["state"][0])
    a, b = _records(one.out_dir), _records(tmp_path / "two")
    assert [r["step"] for r in b] == list(range(1, 7)) and [r["tokens"] for r in a] == [r["tokens"] for r in b]
    for key in ("train_loss", "grad_norm", "val_loss"):  # losses averaged over ranks, evaluation split between them
        assert [r.get(key) for r in a] == pytest.approx([r.get(key) for r in b], abs=1e-4, nan_ok=False)


_TEARDOWN_PROBE = """
import sys, weakref
import torch.distributed as dist
from tinylm.training.config import load_config
from tinylm.training.loop import Trainer
trainer = Trainer(load_config(sys.argv[1], {"train.out_dir": sys.argv[2]}))
wrapper = weakref.ref(trainer.ddp)
trainer.run()
print(f"rank {trainer.dist.rank}: wrapper alive {wrapper() is not None}, group alive {dist.is_initialized()}", flush=True)
"""


def test_a_finished_run_leaves_no_process_group_for_interpreter_shutdown(config_file, tmp_path):
    """Issue 11: a finished run was reported failed 1 time in 8 (rank 1: `terminate called without an active
    exception`, SIGABRT at exit). Root cause: the DDP wrapper (its reducer holds the process group and the last
    all-reduce's work) outlived Trainer.run and was destroyed during interpreter shutdown. It must be gone, and the
    group destroyed, before run() returns."""
    path, _ = config_file(**{"train.max_steps": 2, "train.eval_interval": 2})
    probe = tmp_path / "probe.py"
    probe.write_text(_TEARDOWN_PROBE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(probe), str(path), str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(proc.stdout.split("\n"))[1:] == [f"rank {r}: wrapper alive False, group alive False" for r in (0, 1)], proc.stdout


@pytest.mark.slow
def test_compiled_ddp_reaches_the_parameters_of_one_eager_process(config_file, tmp_path):
    """torch.compile around DDP, with accumulation's no_sync steps: same weights, and the graph is cut at gradient buckets.

    d_model 256 makes ~2.5 MB of gradients: more than DDP's 1 MB first bucket, so two buckets, two subgraphs
    (each bucket's all-reduce can then start while the rest of the backward runs).
    """
    path, config = config_file(**{"train.max_steps": 4, "train.eval_interval": 2, "model.compile": True, "model.d_model": 256})
    env = {**ENV, "TORCH_LOGS": "+ddp_graphs"}
    proc = subprocess.run(_torchrun(2, "--config", path, "--out", tmp_path / "two"), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "---split graph---" in proc.stderr and "---submod_1 graph---" in proc.stderr  # dynamo's DDPOptimizer split it
    one = train(config.with_overrides({"train.out_dir": str(tmp_path / "one"), "model.compile": False}))
    _close(read_checkpoint(one.out_dir)["model"], read_checkpoint(tmp_path / "two")["model"], atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@pytest.mark.parametrize("compiled", [False, True])
def test_two_gpus_over_nccl_reach_the_parameters_of_one(config_file, tmp_path, compiled):
    """The NCCL path: 2 GPUs (one process each) against one eager GPU with the same global batch, in
    float32; with `compiled`, torch.compile around DDP over NCCL, accumulation's no_sync steps included."""
    exact = {"train.device": "cuda", "train.tf32": False, "model.autocast": "none", "model.compile": compiled}
    path, config = config_file(**{"train.max_steps": 6, "train.eval_interval": 3, **exact})
    proc = subprocess.run(_torchrun(2, "--config", path, "--out", tmp_path / "two"), env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = train(config.with_overrides({"train.out_dir": str(tmp_path / "one"), "model.compile": False}))
    _close(read_checkpoint(one.out_dir)["model"], read_checkpoint(tmp_path / "two")["model"], atol=1e-4)


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "tinylm" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no rank {rank} process")


def test_killed_rank_stops_the_run_and_the_checkpoint_resumes_on_one_process(config_file, tmp_path):
    settings = {"train.max_steps": 100_000, "optim.cosine_iters": 30, "train.checkpoint_interval": 3, "train.eval_interval": 100_000}
    path, config = config_file(**settings)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_torchrun(2, "--config", path, "--out", run), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300  # a guard against a hang, generous for a loaded machine
        while not (run / "metrics.jsonl").exists() or len((run / "metrics.jsonl").read_text().splitlines()) < 7:
            assert proc.poll() is None and time.time() < deadline, "run ended or stalled before the kill"
            time.sleep(0.05)
        os.kill(_rank_pid(proc, 1), 9)  # SIGKILL rank 1: no handler, no goodbye
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "process 0 of 2 stopped" in err and "another process died or lost contact" in err, err[-3000:]
    assert f"--resume {run}" in err
    stopped = read_checkpoint(run)["iteration"]
    assert stopped >= 6 and stopped % 3 == 0

    # resume on ONE process (4 micro-batches instead of 2 ranks × 2): same global batch, same batches
    end = stopped + 3
    resumed = train(load_config(run / "config.toml", {"train.max_steps": end}), resume=True)
    whole = train(config.with_overrides({"train.max_steps": end, "train.out_dir": str(tmp_path / "whole")}))
    assert resumed.step == whole.step == end
    _close(read_checkpoint(whole.out_dir)["model"], read_checkpoint(run)["model"])
    assert [r["step"] for r in _records(run)] == list(range(1, end + 1))


def _wait_for_steps(proc: subprocess.Popen, run, steps: int, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not (run / "metrics.jsonl").exists() or len((run / "metrics.jsonl").read_text().splitlines()) < steps:
        assert proc.poll() is None and time.time() < deadline, "run ended or stalled too early"
        time.sleep(0.05)


def _worker_pids(launcher: subprocess.Popen, count: int, seconds: float = 60) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        pids = []
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") is not None and "tinylm" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.Error:
                continue
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise AssertionError("workers not found")


@pytest.mark.parametrize("delivery, after_steps", [
    pytest.param("every process", 5),  # SIGINT to torchrun and, directly, to each worker: each worker gets two
    pytest.param("terminal", 3, marks=pytest.mark.slow),  # SIGINT to torchrun's group: torchrun forwards one
    pytest.param("every process", 11, marks=pytest.mark.slow),
])
def test_ctrl_c_under_torchrun_saves_once_and_resumes(config_file, tmp_path, delivery, after_steps):
    """Ctrl-C in a terminal reaches torchrun's process group; torch >= 2.2 starts each worker in a
    session of its own and forwards the signal, older torchrun left workers in the terminal's group
    so they got it twice. Both ways: every process stops after the same step and rank 0 saves once."""
    settings = {"train.max_steps": 100_000, "optim.cosine_iters": 30, "train.checkpoint_interval": 1000, "train.eval_interval": 100_000}
    path, config = config_file(**settings)
    run = tmp_path / "ctrl_c"
    proc = subprocess.Popen(_torchrun(2, "--config", path, "--out", run), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # its own process group, like a terminal job
    try:
        workers = _worker_pids(proc, 2)
        _wait_for_steps(proc, run, after_steps)
        if delivery == "every process":  # the terminal's copy reaches the workers first, torchrun's forward later
            for pid in workers:
                os.killpg(os.getpgid(pid), signal.SIGINT)
            time.sleep(0.3)  # apart enough that the two are not merged into one Python-level signal
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stopped = read_checkpoint(run)["iteration"]  # the stop saved (the interval alone would not have)
    assert stopped >= after_steps
    assert err.count(f"stopped at step {stopped}; checkpoint saved") == 1, err[-3000:]  # rank 0 alone speaks
    assert f"continue with: torchrun --standalone --nproc_per_node 2 -m tinylm train --resume {run}" in err, err[-3000:]
    # no worker traceback and no lost peer (torchrun itself prints its own SignalException traceback)
    assert "another process died" not in err and "KeyboardInterrupt" not in err and "tinylm/" not in err, err[-3000:]
    assert [r["step"] for r in _records(run)] == list(range(1, stopped + 1))  # every finished step logged once

    end = stopped + 2  # continue on one process: the same weights as a run never stopped
    train(load_config(run / "config.toml", {"train.max_steps": end}), resume=True)
    whole = train(config.with_overrides({"train.max_steps": end, "train.out_dir": str(tmp_path / "whole")}))
    _close(read_checkpoint(whole.out_dir)["model"], read_checkpoint(run)["model"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_at_a_rendezvous_and_train_like_one_process(config_file, tmp_path):
    """`--nnodes 2` with a c10d rendezvous endpoint: two launchers (two "nodes" on this host), one process each."""
    path, config = config_file(**{"train.max_steps": 4, "train.eval_interval": 2})
    for attempt in range(3):  # the free port can be taken between finding it and binding it: try another
        endpoint = f"127.0.0.1:{_free_port()}"
        logs = [tmp_path / f"node{n}-{attempt}.log" for n in range(2)]  # files, not pipes: a full pipe would stall a node
        launchers = []
        for log in logs:
            with open(log, "w") as sink:
                launchers.append(subprocess.Popen(
                    [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
                     f"--rdzv-endpoint={endpoint}", "--rdzv-id=tinylm-test", "--max-restarts=0", "-m", "tinylm", "train",
                     "--no-progress", "--config", str(path), "--out", str(tmp_path / f"nodes{attempt}")],
                    env=ENV, stdout=sink, stderr=subprocess.STDOUT, text=True))
        try:
            for p in launchers:
                p.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for p in launchers:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        outputs = [(log.read_text(errors="replace"), log.read_text(errors="replace")) for log in logs]
        if not any("address already in use" in err.lower() for _, err in outputs):
            break
    assert [p.returncode for p in launchers] == [0, 0], [err[-3000:] for _, err in outputs]
    (tmp_path / f"nodes{attempt}").rename(tmp_path / "nodes")
    assert sum(out.count("trained 4 steps") for out, _ in outputs) == 1  # global rank 0 alone reports
    one = train(config.with_overrides({"train.out_dir": str(tmp_path / "one")}))
    _close(read_checkpoint(one.out_dir)["model"], read_checkpoint(tmp_path / "nodes")["model"])
    assert [r["val_loss"] for r in _records(one.out_dir) if "val_loss" in r] == pytest.approx(
        [r["val_loss"] for r in _records(tmp_path / "nodes") if "val_loss" in r], abs=1e-4)


@pytest.mark.slow
def test_one_process_run_resumes_on_two(config_file, tmp_path):
    path, config = config_file(**{"train.max_steps": 8, "train.eval_interval": 100})
    split = config.with_overrides({"train.out_dir": str(tmp_path / "split")})
    first = train(split, on_step=lambda step, record: step == 4)
    assert first.interrupted and first.step == 4
    proc = subprocess.run(_torchrun(2, "--resume", tmp_path / "split"), env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    whole = train(config.with_overrides({"train.out_dir": str(tmp_path / "whole")}))
    _close(read_checkpoint(whole.out_dir)["model"], read_checkpoint(tmp_path / "split")["model"])
