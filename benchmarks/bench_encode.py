"""Encoding throughput with GPT-2's files: tinylm against tiktoken and Hugging Face `tokenizers`.

Text: the first 20 MB of data/bench_en.txt, cut at a document boundary (the text ends with a
`<|endoftext|>`). Tokenizer: GPT-2's vocabulary and merges from tests/fixtures, with
<|endoftext|> as special token (id 50256), loaded by each library from the same files.

Configurations, each run in a fresh subprocess per repeat (the parent also samples the peak of
the summed PSS of that process and its workers):

  tinylm      1 process   Tokenizer.from_files(...).encode(text): a fresh Tokenizer each repeat, so
                          the per-pre-token cache starts cold; a second encode of the same text on
                          the same Tokenizer is reported as "warm".
  tinylm      array       the same with encode_to_numpy(text): a uint16 array, gigatoken's output
                          type (its encode returns a NumPy array, not a list of ints)
  tinylm      all cores   tinylm.tokenizer.token_arrays.encode_file(tok, path, out.npy,
                          num_workers=os.cpu_count()) (timed end to end: reads the file, starts the
                          workers, writes the .npy)
  tiktoken    1 thread    encode(text, allowed_special="all")
  tiktoken    all cores   encode_batch(documents, num_threads=os.cpu_count(), allowed_special="all")
  tokenizers  1 thread    encode_batch(documents) with TOKENIZERS_PARALLELISM=false; encode(text) on
                          the whole 20 MB string is pathological (about 2.5x slower per byte than per
                          document, and about 190 MB of memory per MB of text: ~4 GB), so it is only
                          run with --hf-single whole
  tokenizers  all cores   encode_batch(documents) with TOKENIZERS_PARALLELISM=true
  gigatoken   1 thread    gigatoken.Tokenizer.from_tiktoken(<GPT-2 ranks>, pretokenizer="gpt2").encode(text)
                          with RAYON_NUM_THREADS=1, a fresh Tokenizer each repeat; warm = second pass
  gigatoken   files       a whole `python -c` process: load the tokenizer, encode_files(TextFileSource(
                          [path], separator=EOT)) on all cores, save the ids as .npy (its documents drop
                          the separator, so its ids are checked against tiktoken's without 50256)
  tinylm      cli         a whole `tinylm encode PATH -t DIR -o out.npy` process (all cores), the
                          tokenizer read from tinylm's tokenizer cache (load_cache; the parent fills a
                          cache folder of the run's own first, as any second run on a machine finds it)
  tinylm      cli-nocache the same with TINYLM_CACHE_DIR=off: vocab.json and merges.txt parsed

gigatoken is an optional peer (pip install gigatoken==0.10.0, for benchmarking only); its
configurations are skipped when it is not installed.

Documents are the text split just after each <|endoftext|>, so the concatenation of their ids
is the ids of the whole text. Only the encode call is timed (loading the tokenizer and reading
the text are not), except for tinylm's encode_file as noted. The ids of every configuration
are checked against tiktoken's single-thread ids; a tinylm mismatch fails the benchmark.

    .venv/bin/python benchmarks/bench_encode.py                                   # full: 20 MB, 5 repeats
    .venv/bin/python benchmarks/bench_encode.py --json bench_encode.json
    .venv/bin/python benchmarks/bench_encode.py --mb 2 --repeats 1                # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (  # noqa: E402
    MB,
    RESULT_MARK,
    ROOT,
    busy_warning,
    cut_text,
    ensure_corpus,
    machine_info,
    median,
    print_table,
    ratio,
    run_measured,
)

EOT = "<|endoftext|>"
FIXTURES = ROOT / "tests" / "fixtures"
VOCAB = FIXTURES / "gpt2_vocab.json"
MERGES = FIXTURES / "gpt2_merges.txt"

# (name, tool, mode) in the order they run within a repeat: tools alternate.
CONFIGS = [
    ("tinylm-1", "tinylm", "single"),
    ("tinylm-np", "tinylm", "numpy"),
    ("tiktoken-1", "tiktoken", "single"),
    ("tokenizers-1", "tokenizers", "single"),
    ("tinylm-all", "tinylm", "all"),
    ("tiktoken-all", "tiktoken", "all"),
    ("tokenizers-all", "tokenizers", "all"),
    ("gigatoken-1", "gigatoken", "single"),
    ("gigatoken-files", "gigatoken", "files"),
    ("tinylm-cli", "tinylm", "cli"),
    ("tinylm-cli-nocache", "tinylm", "cli-nocache"),
]
GIGATOKEN_FILES = """
import sys, numpy as np, awkward as ak, gigatoken
ranks, text, out = sys.argv[1:4]
tok = gigatoken.Tokenizer.from_tiktoken(ranks, pretokenizer="gpt2", special_tokens={"<|endoftext|>": 50256})
ids = tok.encode_files(gigatoken.TextFileSource([text], separator="<|endoftext|>"))
np.save(out, ak.to_numpy(ak.flatten(ids)).astype(np.uint16))
"""


# --- text ---------------------------------------------------------------------------------
def split_documents(text: str) -> list[str]:
    """Pieces that each end just after an <|endoftext|> (the last may not); joined, they are text."""
    return [d for d in re.split(f"(?<={re.escape(EOT)})", text) if d]


# --- children: one configuration, one repeat ---------------------------------------------------
def tiktoken_encoding():
    """tiktoken's GPT-2 Encoding from the fixture files (as tests/tokenizer/conftest.py builds it)."""
    import tiktoken

    from tinylm.tokenizer.files import unicode_to_bytes
    from tinylm.tokenizer.pretokenize import GPT2_PATTERN

    u2b = unicode_to_bytes()
    vocab = json.loads(VOCAB.read_text())
    ranks = {bytes(u2b[c] for c in tok): i for tok, i in vocab.items() if tok != EOT}
    return tiktoken.Encoding("gpt2-fixture", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256})


def hf_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(VOCAB), str(MERGES)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT])
    return tok


def memchr_mb_s(path: Path, repeats: int = 7) -> float:
    """Single-core memory read speed on the text, MB/s: bytes.find of a byte that valid UTF-8 never
    holds (0xFF) scans all of it with memchr (SIMD in glibc); median of `repeats`, data in RAM."""
    data = path.read_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        assert data.find(b"\xff") == -1
        times.append(time.perf_counter() - t0)
    return len(data) / MB / median(times)


def write_tiktoken_ranks(path: Path) -> None:
    """GPT-2's ranks in tiktoken's file format (base64 token, space, rank), for gigatoken.from_tiktoken."""
    import base64

    from tinylm.tokenizer.files import unicode_to_bytes

    u2b = unicode_to_bytes()
    vocab = json.loads(VOCAB.read_text())
    ranks = sorted((i, bytes(u2b[c] for c in tok)) for tok, i in vocab.items() if tok != EOT)
    path.write_text("".join(f"{base64.b64encode(b).decode()} {i}\n" for i, b in ranks))


def whole_process(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's CPU seconds (all its threads and workers) of one command."""
    import resource
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def child(name: str, text_path: Path, dump: Path | None, hf_single: str, workdir: Path) -> dict:
    tool, mode = next((t, m) for n, t, m in CONFIGS if n == name)
    ncpu = os.cpu_count() or 1
    text = text_path.read_text(encoding="utf-8")
    out: dict = {"name": name}
    ids = None
    if mode in ("cli", "cli-nocache"):
        import shutil

        npy = workdir / f"tinylm-cli-{os.getpid()}.npy"
        tinylm_cmd = [str(Path(sys.executable).with_name("tinylm")), "encode", str(text_path), "-t", str(workdir / "tok"), "-o", str(npy)]
        out["seconds"], out["cpu_seconds"] = whole_process(tinylm_cmd)
        out["how"] = f"whole process: tinylm encode PATH -t DIR -o out.npy (all cores), tokenizer cache {os.environ.get('TINYLM_CACHE_DIR')}"
        if dump is not None:
            import numpy as np

            ids = np.load(npy)
        shutil.rmtree(npy, ignore_errors=True)
        for p in (npy, npy.with_name(npy.name + ".json")):
            p.unlink(missing_ok=True)
    elif tool == "gigatoken" and mode == "files":
        import numpy as np

        npy = workdir / f"gigatoken-files-{os.getpid()}.npy"
        out["seconds"], out["cpu_seconds"] = whole_process([sys.executable, "-c", GIGATOKEN_FILES, str(workdir / "gpt2.tiktoken"), str(text_path), str(npy)])
        out["how"] = "whole process: python -c: from_tiktoken, encode_files(TextFileSource(separator=EOT)), np.save"
        if dump is not None:
            ids = np.load(npy)
        npy.unlink(missing_ok=True)
    elif tool == "gigatoken":
        import gigatoken

        tok = gigatoken.Tokenizer.from_tiktoken(str(workdir / "gpt2.tiktoken"), pretokenizer="gpt2", special_tokens={EOT: 50256})
        ids = cold_and_warm(tok.encode, text, out)
        out["how"] = f"fresh Tokenizer.encode(text), RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS')}; warm = second pass"
    elif tool == "tinylm":
        from tinylm import Tokenizer

        tok = Tokenizer.from_files(VOCAB, MERGES, [EOT])
        if mode == "single":
            ids = cold_and_warm(tok.encode, text, out)
            out["how"] = "Tokenizer.encode(text) -> list, fresh Tokenizer (cold cache); warm = second pass"
        elif mode == "numpy":
            ids = cold_and_warm(tok.encode_to_numpy, text, out)
            out["how"] = "Tokenizer.encode_to_numpy(text) -> uint16 array (gigatoken's output type), fresh Tokenizer; warm = second pass"
        else:
            import numpy as np

            from tinylm.tokenizer.token_arrays import encode_file

            npy = workdir / f"tinylm-all-{os.getpid()}.npy"
            _, out["seconds"], out["cpu_seconds"] = timed(lambda: encode_file(tok, text_path, npy, num_workers=ncpu))
            out["how"] = f"encode_file(num_workers={ncpu}), file to .npy"
            if dump is not None:
                ids = np.load(npy)
            for p in (npy, npy.with_name(npy.name + ".json")):
                p.unlink(missing_ok=True)
    elif tool == "tiktoken":
        enc = tiktoken_encoding()
        if mode == "single":
            ids, out["seconds"], out["cpu_seconds"] = timed(lambda: enc.encode(text, allowed_special="all"))
            out["how"] = 'encode(text, allowed_special="all"), 1 thread'
        else:
            docs = split_documents(text)
            batch, out["seconds"], out["cpu_seconds"] = timed(lambda: enc.encode_batch(docs, num_threads=ncpu, allowed_special="all"))
            out["how"] = f'encode_batch({len(docs):,} documents, num_threads={ncpu}, allowed_special="all")'
            if dump is not None:
                ids = [i for doc in batch for i in doc]
    else:
        tok = hf_tokenizer()
        parallel = os.environ.get("TOKENIZERS_PARALLELISM")
        if mode == "single" and hf_single == "whole":
            ids, out["seconds"], out["cpu_seconds"] = timed(lambda: tok.encode(text).ids)
            out["how"] = f"encode(text) on the whole text (TOKENIZERS_PARALLELISM={parallel})"
        else:
            docs = split_documents(text)
            batch, out["seconds"], out["cpu_seconds"] = timed(lambda: tok.encode_batch(docs))
            out["how"] = f"encode_batch({len(docs):,} documents) with TOKENIZERS_PARALLELISM={parallel}"
            if dump is not None:
                ids = [i for e in batch for i in e.ids]
    out["text_bytes"] = text_path.stat().st_size
    if ids is not None:
        out["num_tokens"] = len(ids)
        if dump is not None:
            import numpy as np

            np.save(dump, np.asarray(ids, dtype=np.int32))
    return out


def timed(call):
    """call(), its wall seconds and this process's CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = call()
    return result, time.perf_counter() - t0, time.process_time() - c0


def cold_and_warm(encode, text: str, out: dict):
    """encode(text) twice on one tokenizer: the first (cold cache) and second (warm) pass timed into
    `out` (seconds, cpu_seconds, warm_seconds, warm_cpu_seconds, warm_equal); the first pass's ids."""
    import numpy as np

    ids, out["seconds"], out["cpu_seconds"] = timed(lambda: encode(text))
    again, out["warm_seconds"], out["warm_cpu_seconds"] = timed(lambda: encode(text))
    out["warm_equal"] = bool(np.array_equal(ids, again))
    return ids


# --- parent ----------------------------------------------------------------------------------
def first_mismatch(a, b) -> str:
    import numpy as np

    if len(a) != len(b):
        n = min(len(a), len(b))
        diff = np.nonzero(a[:n] != b[:n])[0]
        where = f"first difference at index {diff[0]:,}" if len(diff) else f"equal for the first {n:,} ids"
        return f"lengths differ ({len(a):,} vs {len(b):,}); {where}"
    diff = np.nonzero(a != b)[0]
    return f"{len(diff):,} ids differ, first at index {diff[0]:,}" if len(diff) else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=None, help="corpus to cut the text from (default: data/bench_en.txt, decompressed from ../shared/data if missing)")
    ap.add_argument("--mb", type=float, default=20.0, help="size of the cut in MB, 10^6 bytes (default 20)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hf-single", choices=["whole", "batch"], default="batch",
                    help="tokenizers single-thread: encode_batch on the documents with TOKENIZERS_PARALLELISM=false (default), "
                         "or encode(text) on the whole text (measured here: ~2.5x slower per byte than batch and ~190 MB "
                         "of memory per MB of text, i.e. ~4 GB for 20 MB)")
    ap.add_argument("--only", default=None, help="comma-separated subset of configurations: " + ",".join(n for n, _, _ in CONFIGS))
    ap.add_argument("--json", type=Path, default=None, help="save raw results here")
    ap.add_argument("--interval", type=float, default=0.02, help="memory sampling interval in seconds (default 0.02; PSS is read less often when reading it would take over 10%% of a core)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--text", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        res = child(args.child, args.text, args.dump, args.hf_single, args.workdir)
        print(RESULT_MARK + json.dumps(res), flush=True)
        return 0

    import numpy as np

    configs = CONFIGS
    try:
        import gigatoken  # noqa: F401
    except ImportError:
        print("gigatoken is not installed (pip install gigatoken==0.10.0): its configurations are skipped", flush=True)
        configs = [c for c in configs if c[1] != "gigatoken"]
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {n for n, _, _ in CONFIGS}
        if unknown:
            ap.error(f"unknown configuration(s): {sorted(unknown)}")
        if "tiktoken-1" not in wanted:
            wanted.add("tiktoken-1")  # the reference for ids and ratios
        configs = [c for c in configs if c[0] in wanted]
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    src = args.input if args.input is not None else ensure_corpus("bench_en.txt")
    if not src.is_file():
        ap.error(f"input file not found: {src}")
    ncpu = os.cpu_count() or 1
    info = machine_info()
    warn = busy_warning()

    with tempfile.TemporaryDirectory(prefix="tinylm-bench-encode-") as tmp:
        workdir = Path(tmp)
        text_path = workdir / "text.txt"
        nbytes = cut_text(src, int(args.mb * MB), text_path, EOT)
        write_tiktoken_ranks(workdir / "gpt2.tiktoken")
        from tinylm import Tokenizer

        os.environ["TINYLM_CACHE_DIR"] = str(workdir / "tokenizer-cache")  # the run's own tokenizer cache (children inherit it)
        Tokenizer.from_files(VOCAB, MERGES, [EOT]).save_dir(workdir / "tok")
        Tokenizer.from_dir(workdir / "tok")  # fills it for tinylm-cli
        print(f"text: first {nbytes / MB:.2f} MB of {src} (cut after an {EOT}); GPT-2 files from {FIXTURES}; "
              f"{args.repeats} repeat(s); {ncpu} CPUs; tiktoken {info['tiktoken']}, tokenizers {info['tokenizers']}", flush=True)
        if warn:
            print(warn, flush=True)

        memchr = memchr_mb_s(src)  # the whole corpus: larger than the caches, so this is RAM bandwidth
        print(f"single-core memory read (memchr over all of {src.name}, {src.stat().st_size / MB:.0f} MB): {memchr:,.0f} MB/s", flush=True)
        runs: list[dict] = []
        dumps: dict[str, Path] = {}
        for rep in range(args.repeats):
            for name, tool, mode in configs:  # tools alternate within each repeat
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--text", str(text_path), "--workdir", str(workdir),
                       "--hf-single", args.hf_single]
                if rep == 0:
                    dumps[name] = workdir / f"ids-{name}.npy"
                    cmd += ["--dump", str(dumps[name])]
                env = {}
                if tool == "tokenizers":
                    env["TOKENIZERS_PARALLELISM"] = "true" if mode == "all" else "false"
                if tool == "gigatoken" and mode == "single":
                    env["RAYON_NUM_THREADS"] = "1"
                if mode == "cli-nocache":
                    env["TINYLM_CACHE_DIR"] = "off"
                label = f"{name} repeat={rep + 1}"
                r = run_measured(cmd, label, env=env, interval=args.interval)
                res = r.result
                res["mb_s"] = nbytes / MB / res["seconds"]
                res["mb_per_cpu_s"] = nbytes / MB / max(res["cpu_seconds"], 1e-9)
                if "warm_seconds" in res:
                    res["warm_mb_s"] = nbytes / MB / res["warm_seconds"]
                    res["warm_mb_per_cpu_s"] = nbytes / MB / max(res["warm_cpu_seconds"], 1e-9)
                runs.append({"config": name, "tool": tool, "mode": mode, "repeat": rep + 1, **r.to_json()})
                warm = f", warm {res['warm_mb_s']:.2f} MB/s" if "warm_mb_s" in res else ""
                print(f"  {label}: {res['seconds']:.2f}s (CPU of the main process {res['cpu_seconds']:.2f}s) = "
                      f"{res['mb_s']:.2f} MB/s{warm}; peak {r.peak_mb:.0f} MB "
                      f"over up to {r.max_procs} process(es)  [{res['how']}]", flush=True)

            if rep == 0:  # check ids once, against tiktoken single-thread
                ref = np.load(dumps["tiktoken-1"])
                checks = {}
                for name, tool, mode in configs:
                    if name == "tiktoken-1":
                        continue
                    checks[name] = first_mismatch(np.load(dumps[name]), ref[ref != 50256] if name == "gigatoken-files" else ref)
                    if name in ("tinylm-1", "tinylm-np", "gigatoken-1"):
                        warm_ok = next(x for x in runs if x["config"] == name)["result"].get("warm_equal")
                        if not warm_ok:
                            checks[name] = (checks[name] + "; " if checks[name] else "") + "warm pass differs from cold pass"
                print(f"  ids vs tiktoken ({len(ref):,} tokens): "
                      + "; ".join(f"{n} {'identical' if not m else 'DIFFERENT: ' + m}" for n, m in checks.items()), flush=True)

    by = lambda name, key: median(x["result"].get(key) for x in runs if x["config"] == name)  # noqa: E731
    peak = lambda name: median(x["peak_mb"] for x in runs if x["config"] == name)  # noqa: E731
    how = {x["config"]: x["result"]["how"] for x in runs}
    present = [n for n, _, _ in configs]

    print()
    print(f"Medians of {args.repeats} run(s) on {nbytes / MB:.2f} MB; MB/s = 10^6 bytes of UTF-8 text per second; "
          f"peak = peak summed PSS of the process (and workers).")
    print()
    rows = []
    for name, tool, mode in configs:
        cpu = f"{by(name, 'mb_per_cpu_s'):.2f}" if mode in ("single", "numpy", "cli", "cli-nocache", "files") else "-"
        rows.append([tool, {"single": "1 process", "numpy": "1 process, array", "cli": f"tinylm encode, whole process ({ncpu} cores)",
                            "cli-nocache": f"tinylm encode, whole process ({ncpu} cores), no tokenizer cache",
                            "files": f"encode_files, whole process ({ncpu} cores)"}.get(mode, f"all cores ({ncpu})"), f"{by(name, 'mb_s'):.2f}", cpu,
                     f"{peak(name):.0f}", how[name]])
        if name in ("tinylm-1", "tinylm-np", "gigatoken-1"):
            rows.append([tool, "1 process" + (", array" if mode == "numpy" else "") + ", warm cache", f"{by(name, 'warm_mb_s'):.2f}", f"{by(name, 'warm_mb_per_cpu_s'):.2f}",
                         "", "second encode of the same text"])
    print_table(["tool", "mode", "MB/s (wall)", "MB per CPU-s", "peak PSS (MB)", "how"], rows)
    print()
    print("MB per CPU-s: text per second of CPU time of the encoding process, a check that is less sensitive to other "
          "load; shown for the one-process modes only (for all-cores modes it would miss the workers); the whole-process "
          "modes count the CPU time of the process and its workers.")
    print(f"single-core memory read bandwidth (memchr scan of the whole corpus): {memchr:,.0f} MB/s; per CPU-second tinylm "
          f"single cold encodes at {100 * by('tinylm-1', 'mb_per_cpu_s') / memchr:.2f}% of it" if "tinylm-1" in present else "")

    tk1 = by("tiktoken-1", "mb_s")
    ratios = {}
    if "tinylm-1" in present:
        ratios["tinylm_single_cold / tiktoken_single"] = ratio(by("tinylm-1", "mb_s"), tk1)
        ratios["tinylm_single_warm / tiktoken_single"] = ratio(by("tinylm-1", "warm_mb_s"), tk1)
        ratios["tinylm_single_cold / tiktoken_single, by CPU time"] = ratio(by("tinylm-1", "mb_per_cpu_s"), by("tiktoken-1", "mb_per_cpu_s"))
    if "tinylm-all" in present:
        ratios["tinylm_all_cores / tiktoken_single"] = ratio(by("tinylm-all", "mb_s"), tk1)
        if "tiktoken-all" in present:
            ratios["tinylm_all_cores / tiktoken_all_cores"] = ratio(by("tinylm-all", "mb_s"), by("tiktoken-all", "mb_s"))
    if "gigatoken-1" in present and "tinylm-1" in present:
        ratios["tinylm_single_cold / gigatoken_single_cold"] = ratio(by("tinylm-1", "mb_s"), by("gigatoken-1", "mb_s"))
        ratios["tinylm_single_warm / gigatoken_single_warm"] = ratio(by("tinylm-1", "warm_mb_s"), by("gigatoken-1", "warm_mb_s"))
    if "gigatoken-1" in present and "tinylm-np" in present:  # the same output type: an array of ids
        ratios["tinylm_array_cold / gigatoken_single_cold"] = ratio(by("tinylm-np", "mb_s"), by("gigatoken-1", "mb_s"))
        ratios["tinylm_array_warm / gigatoken_single_warm"] = ratio(by("tinylm-np", "warm_mb_s"), by("gigatoken-1", "warm_mb_s"))
    if "gigatoken-files" in present and "tinylm-cli" in present:
        ratios["tinylm encode (whole process) / gigatoken encode_files (whole process)"] = ratio(by("tinylm-cli", "mb_s"), by("gigatoken-files", "mb_s"))
    if "gigatoken-files" in present and "tinylm-cli-nocache" in present:
        ratios["tinylm encode, no tokenizer cache (whole process) / gigatoken encode_files"] = ratio(by("tinylm-cli-nocache", "mb_s"), by("gigatoken-files", "mb_s"))
    for name in ("tokenizers-1", "tokenizers-all"):
        if name in present:
            ratios[f"tinylm_{'single_cold' if name.endswith('1') else 'all_cores'} / {name.replace('-1', '_single').replace('-all', '_all_cores')}"] = ratio(
                by("tinylm-1" if name.endswith("1") else "tinylm-all", "mb_s"), by(name, "mb_s"))
    print()
    print("ratios (throughput; higher is better for tinylm. Targets (issue 12): tinylm single cold >= 1.2x gigatoken single "
          "cold, warm >= 1.0x its warm; tinylm encode whole process >= 1.2x gigatoken encode_files)")
    print()
    print_table(["ratio", "value"], [[k, f"{v:.2f}x"] for k, v in ratios.items()])
    if warn:
        print()
        print(warn)

    failed = [n for n, m in checks.items() if m and n.startswith("tinylm")]
    if args.json:
        doc = {"benchmark": "encode", "input": str(src), "text_bytes": nbytes, "repeats": args.repeats,
               "hf_single": args.hf_single, "machine": info, "loadavg_at_end": os.getloadavg(),
               "when": time.strftime("%Y-%m-%d %H:%M:%S"), "memchr_mb_s": memchr, "id_checks": checks, "ratios": ratios, "runs": runs}
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"raw results -> {args.json}")
    if failed:
        print(f"FAILED: tinylm ids differ from tiktoken's: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
