"""BPE training benchmark: tinylm.train_bpe against Hugging Face `tokenizers`' BpeTrainer and gigatoken.

Each run is a fresh `python -c` subprocess (so no run inherits another's memory or caches);
the parent measures its wall time and the peak over time of the summed PSS of the child and
all its descendants (tinylm's counting workers included), sampled every ~20 ms. Inside the
child the training call itself is timed too, and tinylm reports its TrainStats (counting vs
merging seconds). Within each repeat the tools alternate (tinylm, tokenizers, tinylm, ...) so
that background noise hits both. Reported: medians over the repeats, and tinylm/tokenizers ratios.

    .venv/bin/python benchmarks/bench_bpe_train.py                                  # full: bench_en, 10K and 32K, 3 repeats
    .venv/bin/python benchmarks/bench_bpe_train.py --json bench_bpe_train.json      # also save raw results
    .venv/bin/python benchmarks/bench_bpe_train.py --mb 5 --sizes 1000 --repeats 1   # smoke test on a 5 MB cut

Both tools: vocab size counts the 256 byte tokens and the special token <|endoftext|>;
tokenizers uses the ByteLevel pre-tokenizer (GPT-2 regex, no prefix space) with the byte
alphabet as initial alphabet, which is what tinylm does. gigatoken 0.10 (an optional peer:
`pip install gigatoken==0.10.0`, for benchmarking only; skipped when not installed) runs
gigatoken.train_bpe(path, size, ["<|endoftext|>"]) with its default tie-breaking ("huggingface"),
so its merges may differ from tinylm's in ties; only time and memory are compared.

    .venv/bin/python benchmarks/bench_bpe_train.py --tools tinylm,gigatoken      # a subset of the tools
    .venv/bin/python benchmarks/bench_bpe_train.py --times 20 --sizes 10000 --repeats 1 --tools tinylm,gigatoken
                                                   # 2.1 GB (bench_en x 20, TinyStories' size), made under data/
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (  # noqa: E402
    RESULT_MARK,
    MB,
    busy_warning,
    cut_text,
    ensure_corpus,
    machine_info,
    median,
    print_table,
    ratio,
    run_measured,
)

SPECIAL = "<|endoftext|>"

TINYLM_CHILD = """
import json, sys, time
from dataclasses import asdict
import tinylm
from tinylm.tokenizer.train import BpeTrainer
path, size = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
tokenizer, stats = BpeTrainer(size, (%(special)r,)).train(path)  # a ready Tokenizer, as tokenizers' trainer gives
train_s = time.perf_counter() - t0
out = asdict(stats)
out.update(train_s=train_s, vocab_size=tokenizer.vocab_size, num_merges=len(tokenizer.merges))
print(%(mark)r + json.dumps(out), flush=True)
""" % {"special": SPECIAL, "mark": RESULT_MARK}

TOKENIZERS_CHILD = """
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
path, size = sys.argv[1], int(sys.argv[2])
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
trainer = trainers.BpeTrainer(
    vocab_size=size,
    special_tokens=[%(special)r],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
)
t0 = time.perf_counter()
tok.train([path], trainer)
train_s = time.perf_counter() - t0
print(%(mark)r + json.dumps({"train_s": train_s, "vocab_size": tok.get_vocab_size()}), flush=True)
""" % {"special": SPECIAL, "mark": RESULT_MARK}

GIGATOKEN_CHILD = """
import json, sys, time
import gigatoken
path, size = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
vocab, merges = gigatoken.train_bpe(path, size, [%(special)r])
train_s = time.perf_counter() - t0
print(%(mark)r + json.dumps({"train_s": train_s, "vocab_size": len(vocab)}), flush=True)
""" % {"special": SPECIAL, "mark": RESULT_MARK}

# rustbpe (nanochat's trainer) takes an iterator of texts and has no special tokens: it is given the
# documents (the file split on the special token, read in 16 MB blocks, which the timing includes) and
# size - 1 (its vocabulary is the 256 bytes and the merges; tinylm's counts the special token too).
RUSTBPE_CHILD = """
import json, sys, time
import rustbpe
path, size = sys.argv[1], int(sys.argv[2])
GPT2 = r"'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
def documents():
    rest = ""
    with open(path, encoding="utf-8") as f:
        while block := f.read(16 << 20):
            *docs, rest = (rest + block).split(%(special)r)
            yield from docs
    if rest:
        yield rest
t0 = time.perf_counter()
tok = rustbpe.Tokenizer()
tok.train_from_iterator(documents(), size - 1, pattern=GPT2)
train_s = time.perf_counter() - t0
print(%(mark)r + json.dumps({"train_s": train_s, "vocab_size": tok.vocab_size + 1}), flush=True)
""" % {"special": SPECIAL, "mark": RESULT_MARK}

ALL_TOOLS = {"tinylm": TINYLM_CHILD, "tokenizers": TOKENIZERS_CHILD, "gigatoken": GIGATOKEN_CHILD, "rustbpe": RUSTBPE_CHILD}
TOOLS = dict(ALL_TOOLS)


def repeated_corpus(path: Path, times: int) -> Path:
    """data/<stem>_x<times>.txt: the file `times` times over (made once; documents end with <|endoftext|>,
    so the copies join at a document boundary). A whole-document cache would measure the repetition:
    tinylm caches nothing larger than one pre-token."""
    out = Path(__file__).resolve().parent.parent / "data" / f"{path.stem}_x{times}.txt"
    if out.exists() and out.stat().st_size == times * path.stat().st_size:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    data = path.read_bytes()
    with open(tmp, "wb") as f:
        for _ in range(times):
            f.write(data)
    tmp.replace(out)
    return out


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=None, help="text file (default: data/bench_en.txt, decompressed from ../shared/data if missing)")
    ap.add_argument("--times", type=int, default=1,
                    help="train on the input repeated this many times (made once under data/, e.g. 20: bench_en x 20 = 2.1 GB, "
                         "the size of TinyStories' training file; issue 12's scale benchmark)")
    ap.add_argument("--mb", type=float, default=None, help="train on only the first MB megabytes of the input, cut after an <|endoftext|> (for smoke tests; default: the whole file)")
    ap.add_argument("--sizes", default="10000,32000", help="comma-separated vocab sizes (default 10000,32000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.02, help="memory sampling interval in seconds (default 0.02; PSS is read less often when reading it would take over 10%% of a core)")
    ap.add_argument("--json", type=Path, default=None, help="save raw results here")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS), help="comma-separated tools (default: all; gigatoken only when installed)")
    args = ap.parse_args()
    TOOLS.clear()
    for tool in (t.strip() for t in args.tools.split(",") if t.strip()):
        if tool not in ALL_TOOLS:
            ap.error(f"unknown tool {tool!r}; choose from {', '.join(ALL_TOOLS)}")
        if tool in ("gigatoken", "rustbpe") and importlib.util.find_spec(tool) is None:
            print(f"{tool} is not installed (pip install {'gigatoken==0.10.0' if tool == 'gigatoken' else 'rustbpe'}): skipped", flush=True)
            continue
        TOOLS[tool] = ALL_TOOLS[tool]
    if "tinylm" not in TOOLS:
        ap.error("--tools must include tinylm (the ratios are tinylm's)")

    path = args.input if args.input is not None else ensure_corpus("bench_en.txt")
    if not path.is_file():
        ap.error(f"input file not found: {path}")
    if args.times > 1:
        path = repeated_corpus(path, args.times)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.repeats < 1 or not sizes:
        ap.error("need at least one size and one repeat")
    if args.mb is None:
        return run(args, path, sizes)
    with tempfile.TemporaryDirectory(prefix="tinylm-bench-train-") as tmp:
        cut = Path(tmp) / f"{path.stem}-{args.mb:g}MB.txt"
        cut_text(path, int(args.mb * MB), cut, SPECIAL)
        return run(args, cut, sizes)


def run(args, path: Path, sizes: list[int]) -> int:
    info = machine_info()
    warn = busy_warning()
    print(f"input: {path} ({path.stat().st_size / 1e6:.1f} MB); sizes {sizes}; {args.repeats} repeat(s); "
          f"{info['cpu_count']} CPUs; tinylm {info['tinylm']}, tokenizers {info['tokenizers']}", flush=True)
    if warn:
        print(warn, flush=True)
    warm_page_cache(path)

    runs: list[dict] = []
    for rep in range(args.repeats):
        for size in sizes:
            for tool, code in TOOLS.items():  # alternate: tinylm, tokenizers, tinylm, tokenizers, ...
                label = f"{tool} vocab={size} repeat={rep + 1}"
                r = run_measured([sys.executable, "-c", code, str(path), str(size)], label, interval=args.interval)
                if r.result.get("vocab_size") != size:
                    print(f"warning: {label} produced a vocabulary of {r.result.get('vocab_size')} tokens, not {size}", flush=True)
                rec = {"tool": tool, "size": size, "repeat": rep + 1, **r.to_json()}
                runs.append(rec)
                extra = ""
                if tool == "tinylm":
                    extra = f"  (count {r.result['count_seconds']:.2f}s, merge {r.result['merge_seconds']:.2f}s)"
                print(f"  {label}: train {r.result['train_s']:.2f}s, process {r.wall_s:.2f}s, CPU {r.cpu_s:.2f}s, peak {r.peak_mb:.0f} MB "
                      f"summed PSS over up to {r.max_procs} process(es) ({r.samples} samples, every "
                      f"{r.mean_pss_interval_s * 1000:.0f} ms; summed RSS peak {r.peak_rss_sum_bytes / 1e6:.0f} MB){extra}", flush=True)

    def med(tool, size, key):
        return median(x[key] if key in x else x["result"].get(key) for x in runs if x["tool"] == tool and x["size"] == size)

    print()
    print(f"Medians of {args.repeats} run(s). train = the training call, timed inside the child; process = the whole "
          f"child process (interpreter start, imports, training, exit); CPU = user+system time of the child and its "
          f"workers (a check less sensitive to other load; threads and processes both add to it); peak = peak of summed PSS of the child and its "
          f"workers, sampled every {args.interval * 1000:.0f} ms or, for large trees, as often as 10% of a core allows.")
    print()
    rows = []
    for size in sizes:
        for tool in TOOLS:
            rows.append([tool, f"{size:,}", f"{med(tool, size, 'train_s'):.2f}", f"{med(tool, size, 'wall_s'):.2f}",
                         f"{med(tool, size, 'cpu_s'):.2f}", f"{med(tool, size, 'peak_mb'):.0f}"])
    print_table(["tool", "vocab", "train wall (s)", "process wall (s)", "CPU, all processes (s)", "peak PSS (MB)"], rows)
    print()
    summary = []
    for peer in (t for t in TOOLS if t != "tinylm"):
        rows = []
        for size in sizes:
            t_r = ratio(med("tinylm", size, "train_s"), med(peer, size, "train_s"))
            p_r = ratio(med("tinylm", size, "wall_s"), med(peer, size, "wall_s"))
            c_r = ratio(med("tinylm", size, "cpu_s"), med(peer, size, "cpu_s"))
            m_r = ratio(med("tinylm", size, "peak_mb"), med(peer, size, "peak_mb"))
            rows.append([f"{size:,}", f"{t_r:.2f}x", f"{p_r:.2f}x", f"{c_r:.2f}x", f"{m_r:.2f}x"])
            summary.append({"peer": peer, "size": size, "train_wall_ratio": t_r, "process_wall_ratio": p_r, "cpu_ratio": c_r,
                            "peak_memory_ratio": m_r})
        target = "issue 12: wall <= 0.80x" if peer in ("gigatoken", "rustbpe") else "wall <= 0.80x, memory <= 1.00x"
        print(f"tinylm / {peer} (lower is better for tinylm; targets: {target})")
        print()
        print_table(["vocab", "train wall", "process wall", "CPU", "peak memory"], rows)
        print()
    rows = []
    for size in sizes:
        c, m, t = med("tinylm", size, "count_seconds"), med("tinylm", size, "merge_seconds"), med("tinylm", size, "train_s")
        d = med("tinylm", size, "distinct_pretokens")
        rows.append([f"{size:,}", f"{c:.2f}", f"{m:.2f}", f"{max(0.0, t - c - m):.2f}", f"{t:.2f}", f"{d:,.0f}"])
    print("where tinylm's time goes (medians)")
    print()
    print_table(["vocab", "counting (s)", "merging (s)", "other (s)", "train total (s)", "distinct pre-tokens"], rows)
    if warn:
        print()
        print(warn)

    if args.json:
        doc = {"benchmark": "bpe_train", "input": str(path), "input_bytes": path.stat().st_size, "cut_mb": args.mb, "sizes": sizes,
               "repeats": args.repeats, "sample_interval_s": args.interval, "machine": info,
               "loadavg_at_end": __import__("os").getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "ratios": summary, "runs": runs}
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"raw results -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
