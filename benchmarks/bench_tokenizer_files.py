"""Loading and writing tokenizer files: tinylm against Hugging Face `tokenizers` and tiktoken.

Tokenizer: GPT-2's (tests/fixtures vocab.json + merges.txt, <|endoftext|> = 50256), written once by
tinylm's `save_dir` as vocab.json + merges.txt, tokenizer.json and tokenizer.tiktoken. Each row is
the median wall time and CPU time of --repeats calls in this process (files in the page cache;
the rows alternate within each round; CPU time is the figure less sensitive to other load):

  tinylm      Tokenizer.from_files(vocab.json, merges.txt, [EOT])
  tinylm      Tokenizer.from_file(tokenizer.json)
  tinylm      Tokenizer.from_tiktoken(tokenizer.tiktoken, pattern="gpt2", special_tokens={EOT: 50256})
              (includes recovering the merges from the ranks)
  tokenizers  tokenizers.Tokenizer.from_file(tokenizer.json)
  tiktoken    tiktoken.Encoding(..., mergeable_ranks=load_tiktoken_bpe(tokenizer.tiktoken)) (no cache)
  tinylm      Tokenizer.save_dir(folder): all five files, fsynced

The ids of every loaded tokenizer on the fixtures are checked equal before timing.

    .venv/bin/python benchmarks/bench_tokenizer_files.py              # 7 repeats
    .venv/bin/python benchmarks/bench_tokenizer_files.py --repeats 1  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
EOT = "<|endoftext|>"


def _time(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _medians(tasks: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds per task; tasks alternate within each round, so background
    load hits them alike."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, fn in tasks.items():
            samples[name].append(_time(fn))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the file each time, as a first load does

    import tiktoken
    import tiktoken.load
    import tokenizers

    from tinylm import Tokenizer
    from tinylm.tokenizer.pretokenize import GPT2_PATTERN

    folder = Path(tempfile.mkdtemp(prefix="bench-tokfiles-"))
    gpt2 = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])
    gpt2.save_dir(folder)

    loaders = {
        "tinylm from_files (vocab.json + merges.txt)": lambda: Tokenizer.from_files(folder / "vocab.json", folder / "merges.txt", [EOT]),
        "tinylm from_file (tokenizer.json)": lambda: Tokenizer.from_file(folder / "tokenizer.json"),
        "tinylm from_tiktoken (.tiktoken)": lambda: Tokenizer.from_tiktoken(folder / "tokenizer.tiktoken", pattern="gpt2", special_tokens={EOT: 50256}),
        "tokenizers Tokenizer.from_file (tokenizer.json)": lambda: tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")),
        "tiktoken Encoding(load_tiktoken_bpe(.tiktoken))": lambda: tiktoken.Encoding(
            "gpt2-file", pat_str=GPT2_PATTERN, mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(folder / "tokenizer.tiktoken")), special_tokens={EOT: 50256}
        ),
    }
    text = "".join((FIXTURES / name).read_text() for name in ("address.txt", "german.txt", "tinystories_sample.txt"))
    expected = gpt2.encode(text)
    for name, load in loaders.items():
        tok = load()
        ids = tok.encode(text).ids if name.startswith("tokenizers") else tok.encode(text, allowed_special="all") if name.startswith("tiktoken") else tok.encode(text)
        if ids != expected:
            raise SystemExit(f"{name}: ids differ from tinylm's GPT-2 tokenizer")

    load_start = os.getloadavg()[0]
    tasks = dict(loaders)
    tasks["tinylm save_dir (five files, fsynced)"] = lambda: gpt2.save_dir(folder / "out")
    rows = _medians(tasks, args.repeats)
    load_end = os.getloadavg()[0]
    print(f"GPT-2 tokenizer files, median of {args.repeats}; load average {load_start:.1f} at the start, {load_end:.1f} at the end")
    print(f"  {'':<52} {'wall ms':>8} {'CPU ms':>8}")
    for name, (wall, cpu) in rows.items():
        print(f"  {name:<52} {wall * 1000:8.0f} {cpu * 1000:8.0f}")
    if args.json:
        args.json.write_text(json.dumps({"repeats": args.repeats, "load_average": [load_start, load_end], "wall_cpu_seconds": rows}, indent=1))


if __name__ == "__main__":
    main()
