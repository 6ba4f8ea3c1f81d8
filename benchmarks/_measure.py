"""Shared helpers for the tokenizer benchmarks: run a command, time it, sample its memory.

Peak memory is the peak over time of the SUM of the proportional set size (PSS) of a process and
all of its descendants (worker processes included), sampled with psutil
(`memory_full_info().pss`, read from /proc/PID/smaps_rollup) every ~20 ms, or less often when
reading it would take more than 10% of a core (see TreeMemorySampler). PSS splits each shared
page between the processes that map it, so pages shared by a parent and its forked workers are
counted once in the sum, not once per process. A sample only sees what exists at that moment:
spikes shorter than the interval can be missed, so the figure is a (tight) lower bound. The peak
of the summed RSS, read every 20 ms at almost no cost, is kept as an upper bound.

Descendants are re-discovered at every tick; a process once seen keeps being sampled until it
exits, even if its parent exits first and it is re-parented away from the tree.
"""

from __future__ import annotations

import json
import lzma
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
SHARED_DATA_DIR = ROOT.parent / "shared" / "data"
RESULT_MARK = "@@RESULT@@ "  # a child prints one line starting with this, then JSON
MB = 1_000_000  # benchmarks report decimal megabytes (MB/s and MB of memory)


# --- data ------------------------------------------------------------------------------------
def ensure_corpus(name: str = "bench_en.txt") -> Path:
    """data/NAME, decompressed from ../shared/data/NAME.xz (with lzma) the first time."""
    out = DATA_DIR / name
    if out.exists() and out.stat().st_size > 0:
        return out
    src = SHARED_DATA_DIR / f"{name}.xz"
    if not src.exists():
        raise SystemExit(f"error: {out} is missing and so is {src} to decompress it from")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    print(f"decompressing {src} -> {out} ...", file=sys.stderr, flush=True)
    try:
        with lzma.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 8 << 20)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def cut_text(src: Path, limit_bytes: int, dst: Path, separator: str = "<|endoftext|>") -> int:
    """Write the first ~limit_bytes of src to dst, ending just after the last separator; returns the size."""
    with open(src, "rb") as f:
        data = f.read(limit_bytes)
    sep = separator.encode()
    end = data.rfind(sep)
    if end == -1:
        raise SystemExit(f"error: no {separator} in the first {limit_bytes:,} bytes of {src}; cannot cut at a document boundary")
    data = data[: end + len(sep)]
    data.decode("utf-8")  # whole documents, so valid UTF-8; fail loudly if not
    dst.write_bytes(data)
    return len(data)


# --- memory sampling -------------------------------------------------------------------------
class TreeMemorySampler:
    """Samples a process tree's memory in a background thread until stopped.

    Every `interval` seconds: find the descendants (cheaply, from /proc/PID/task/TID/children
    when the kernel has it) and read each process's RSS (/proc/PID/statm, microseconds) for the
    summed-RSS peak, an upper bound that counts shared pages once per process. The summed PSS
    needs /proc/PID/smaps_rollup, which the kernel computes by walking the page tables: about
    15 ms of CPU per GB mapped on the 2-core development VM, and it holds the target's mmap lock
    meanwhile. So PSS is read every `interval` only while that is cheap; otherwise the gap grows
    so that PSS reading takes at most `pss_duty` of one core (default 10%: about every 60 ms for a
    400 MB tree, every 150 ms for 1 GB). Without this a 20 ms sampler would use most of a core on a
    large tree and slow down the very process it measures, penalising the tool that uses more memory.
    """

    def __init__(self, pid: int, interval: float = 0.02, pss_duty: float = 0.10):
        self.root_pid = pid
        self.interval = interval
        self.pss_duty = pss_duty
        self.peak_bytes = 0  # peak summed PSS
        self.peak_rss_bytes = 0  # peak summed RSS (upper bound)
        self.peak_procs = 0  # processes alive at the PSS peak
        self.max_procs = 0
        self.samples = 0  # PSS samples
        self.ticks = 0  # RSS samples
        self.pss_cpu_s = 0.0  # CPU time spent reading smaps_rollup
        self._known: dict[int, psutil.Process] = {pid: psutil.Process(pid)}
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._fast_children = os.path.exists(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children")
        self._next_pss = 0.0
        self._elapsed = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def __enter__(self) -> "TreeMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean_pss_interval(self) -> float:
        return self._elapsed / self.samples if self.samples else float("nan")

    # -- discovery -------------------------------------------------------------------------
    def _children_of(self, pid: int) -> list[int]:
        kids: list[int] = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids.extend(int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
        return kids

    def _discover(self) -> None:
        if self._fast_children:
            todo = [self.root_pid]
            seen = {self.root_pid}
            while todo:
                for kid in self._children_of(todo.pop()):
                    if kid not in seen:
                        seen.add(kid)
                        todo.append(kid)
            new = seen - self._known.keys()
            for pid in new:
                try:
                    self._known[pid] = psutil.Process(pid)
                except psutil.Error:
                    pass
            return
        try:
            for child in self._known[self.root_pid].children(recursive=True):
                self._known.setdefault(child.pid, child)
        except psutil.Error:
            pass  # root gone (or a zombie): keep sampling the descendants already known

    def _rss(self, pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            return None

    # -- sampling --------------------------------------------------------------------------
    def sample_once(self, force_pss: bool = False) -> None:
        self._discover()
        rss_total, alive = 0, 0
        for pid in list(self._known):
            rss = self._rss(pid)
            if rss is None:
                if pid != self.root_pid:
                    del self._known[pid]
                continue
            rss_total += rss
            alive += rss > 0  # a zombie has no pages
        self.ticks += 1
        self.max_procs = max(self.max_procs, alive)
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss_total)
        now = time.perf_counter()
        if not force_pss and now < self._next_pss:
            return
        c0 = time.thread_time()
        total, n = 0, 0
        for pid, proc in list(self._known.items()):
            try:
                total += proc.memory_full_info().pss
                n += 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                if pid != self.root_pid:
                    del self._known[pid]
            except psutil.AccessDenied:
                pass
        cost = time.thread_time() - c0  # CPU of this thread (kernel time walking page tables, mostly)
        self.pss_cpu_s += cost
        self._next_pss = now + max(self.interval, cost / self.pss_duty)
        self.samples += 1
        if total > self.peak_bytes:
            self.peak_bytes, self.peak_procs = total, n

    def _run(self) -> None:
        t_start = time.perf_counter()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            self.sample_once(force_pss=self.samples == 0)
            self._elapsed = time.perf_counter() - t_start
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - t0)))
        self._elapsed = time.perf_counter() - t_start


@dataclass
class RunResult:
    cmd_label: str
    wall_s: float  # the whole child process, interpreter start to exit
    peak_pss_bytes: int
    peak_procs: int
    max_procs: int
    samples: int
    returncode: int
    cpu_s: float = 0.0  # user+system CPU of the whole tree (every descendant that was waited for)
    peak_rss_sum_bytes: int = 0  # upper bound: shared pages counted once per process
    mean_pss_interval_s: float = 0.0
    sampler_cpu_s: float = 0.0  # CPU the sampler spent reading PSS (taken from the machine)
    result: dict = field(default_factory=dict)  # the child's RESULT_MARK JSON, if it printed one

    @property
    def peak_mb(self) -> float:
        return self.peak_pss_bytes / MB

    def to_json(self) -> dict:
        d = asdict(self)
        d["peak_mb"] = self.peak_mb
        d["peak_rss_sum_mb"] = self.peak_rss_sum_bytes / MB
        return d


def run_measured(cmd: list[str], label: str = "", *, env: dict | None = None, interval: float = 0.02,
                 pss_duty: float = 0.10, timeout: float | None = None, cwd: str | os.PathLike | None = None) -> RunResult:
    """Run cmd to completion; wall time and peak summed PSS of its process tree.

    The child's stdout is captured (it should print RESULT_MARK + JSON on one line); its stderr
    passes through. A non-zero exit raises RuntimeError with the captured output.
    """
    full_env = os.environ.copy()
    if env:
        full_env.update(env)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=full_env, cwd=cwd, text=True)
    with TreeMemorySampler(proc.pid, interval, pss_duty) as sampler:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"{label or cmd}: timed out after {timeout}s") from None
        wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    result: dict = {}
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    if proc.returncode != 0:
        raise RuntimeError(f"{label or cmd}: exit status {proc.returncode}\n{out[-4000:]}")
    return RunResult(label, wall, sampler.peak_bytes, sampler.peak_procs, sampler.max_procs, sampler.samples,
                     proc.returncode, cpu, sampler.peak_rss_bytes, sampler.mean_pss_interval, sampler.pss_cpu_s, result)


# --- statistics and printing -----------------------------------------------------------------
def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def print_table(headers: list[str], rows: list[list], file=None) -> None:
    """A plain Markdown table (so it can be pasted into docs/BENCHMARKS.md as is)."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c}" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(cells[0]), file=file)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=file)
    for r in cells[1:]:
        print(line(r), file=file)


def machine_info() -> dict:
    """What the numbers were measured on, and how busy it was at the start."""
    import platform

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "mem_total_gb": round(psutil.virtual_memory().total / 1e9, 1),
    }
    for mod in ("tinylm", "tokenizers", "tiktoken"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - informational only
            info[mod] = None
    import importlib.metadata

    for dist in ("gigatoken", "rustbpe"):  # optional peers without __version__
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    return info


def busy_warning() -> str | None:
    load = os.getloadavg()[0]
    ncpu = os.cpu_count() or 1
    if load > 0.5:
        return (f"note: 1-minute load average is {load:.2f} on {ncpu} CPU(s) before starting; other work is running, "
                f"so wall times (and the ratios) are noisy. Rerun on a quiet machine for the record.")
    return None
