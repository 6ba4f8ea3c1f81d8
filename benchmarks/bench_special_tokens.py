"""Cost of special tokens: construction, encode, encode_iterable and encode_file with 1 to 20,000 of them.

For each number n of special tokens (`<|endoftext|>` plus `<|extra_0|>` ... `<|extra_{n-2}|>`) and
each vocabulary (bytes only, no merges; GPT-2's files from tests/fixtures), in this process:

  build        Tokenizer(vocab, merges, specials) plus a first encode("x"), which compiles the
               special-token matcher (built lazily), with tinylm's shared matchers and `re`'s
               pattern cache emptied first: the whole cost of getting a usable tokenizer.
  encode       tok.encode(text) on the benchmark text (warm: after one untimed encode).
  iterable     list(tok.encode_iterable(lines)) over the same text as a list of lines (what
               iterating an open file gives).
  encode_file  tinylm.tokenizer.token_arrays.encode_file(tok, path, out.npy, num_workers=1).
  tiktoken     (GPT-2 vocabulary, when tiktoken is installed) Encoding(..., special_tokens={n
               tokens}) construction and encode(text, allowed_special="all"), for comparison.

Text: the first --mb MB of data/bench_en.txt (read from ../shared/data/bench_en.txt.xz when not
decompressed), cut after its last <|endoftext|>; plain prose whose documents end with
<|endoftext|>. Every figure is the median of --repeats runs; the ids of encode, encode_iterable
and encode_file are checked to be equal (and equal to tiktoken's on the GPT-2 vocabulary). The
load average is printed before and after: the machine is shared.

    .venv/bin/python benchmarks/bench_special_tokens.py                      # 1, 256, 2,000, 20,000; 2 MB; 3 repeats
    .venv/bin/python benchmarks/bench_special_tokens.py --counts 1,256 --mb 0.07 --repeats 1
    .venv/bin/python benchmarks/bench_special_tokens.py --parts none             # construction only
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinylm import Tokenizer  # noqa: E402
from tinylm.tokenizer.token_arrays import encode_file  # noqa: E402

EOT = "<|endoftext|>"
FIXTURES = ROOT / "tests" / "fixtures"
MB = 1_000_000


def read_text(mb: float) -> str:
    """The first mb MB of bench_en.txt, cut after its last <|endoftext|>."""
    want = int(mb * MB)
    plain = ROOT / "data" / "bench_en.txt"
    if plain.exists():
        with open(plain, "rb") as f:
            data = f.read(want)
    else:
        with lzma.open(ROOT.parent / "shared" / "data" / "bench_en.txt.xz", "rb") as f:
            data = f.read(want)
    end = data.rfind(EOT.encode())
    data = data[: end + len(EOT)] if end != -1 else data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8")


def specials_of(n: int) -> list[str]:
    return [EOT] + [f"<|extra_{i}|>" for i in range(n - 1)]


def vocabularies() -> dict[str, tuple[dict[int, bytes], list]]:
    from tinylm.tokenizer.files import load_merges, load_vocab

    gpt2_vocab = {i: t for i, t in load_vocab(FIXTURES / "gpt2_vocab.json").items() if t != EOT.encode()}
    return {"bytes": ({i: bytes([i]) for i in range(256)}, []), "gpt2": (gpt2_vocab, load_merges(FIXTURES / "gpt2_merges.txt"))}


def forget_compiled_matchers() -> None:
    """Drop tinylm's shared special-token matchers and `re`'s pattern cache, so a build pays for compiling."""
    import re

    from tinylm.tokenizer import pretokenize

    re.purge()
    cached = getattr(pretokenize, "_cached_matcher", None)  # absent before the shared matchers existed
    if cached is not None:
        cached.cache_clear()


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_tinylm(vocab, merges, specials, text, lines, path, repeats, parts) -> dict:
    def build():
        forget_compiled_matchers()
        tok = Tokenizer(vocab, merges, specials)
        tok.encode("x")
        return tok

    build_s, tok = median_seconds(build, repeats)
    out = {"build_s": build_s}
    nbytes = len(text.encode("utf-8"))
    ids = tok.encode(text)  # warms the pre-token cache; the reference for the others
    out["ids"] = ids
    if "encode" in parts:
        encode_s, again = median_seconds(lambda: tok.encode(text), repeats)
        out["encode_MBps"] = nbytes / MB / encode_s
        if again != ids:
            raise SystemExit("error: two encodes disagree")
    if "iterable" in parts:
        iter_s, streamed = median_seconds(lambda: list(tok.encode_iterable(lines)), repeats)
        out["iterable_MBps"] = nbytes / MB / iter_s
        if streamed != ids:
            raise SystemExit("error: encode_iterable and encode disagree")
    if "file" in parts:
        with tempfile.TemporaryDirectory() as d:
            npy = Path(d) / "out.npy"
            file_s, _ = median_seconds(lambda: encode_file(tok, path, npy, num_workers=1), repeats)
            if np.load(npy).tolist() != ids:
                raise SystemExit("error: encode_file and encode disagree")
        out["encode_file_MBps"] = nbytes / MB / file_s
    return out


def bench_tiktoken(specials, text, repeats, vocab_size) -> dict | None:
    try:
        import tiktoken
    except ImportError:
        return None
    from tinylm.tokenizer.files import unicode_to_bytes
    from tinylm.tokenizer.pretokenize import GPT2_PATTERN

    u2b = unicode_to_bytes()
    ranks = {bytes(u2b[c] for c in tok): i for tok, i in json.loads((FIXTURES / "gpt2_vocab.json").read_text()).items() if tok != EOT}
    special_ids = {EOT: 50256} | {t: vocab_size + i for i, t in enumerate(specials[1:])}
    build_s, enc = median_seconds(lambda: tiktoken.Encoding("gpt2-specials", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=special_ids), repeats)
    enc.encode(text, allowed_special="all")
    encode_s, ids = median_seconds(lambda: enc.encode(text, allowed_special="all"), repeats)
    return {"build_s": build_s, "encode_MBps": len(text.encode("utf-8")) / MB / encode_s, "ids": ids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,256,2000,20000", help="numbers of special tokens, comma-separated")
    ap.add_argument("--mb", type=float, default=2.0, help="MB of benchmark text")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="encode,iterable,file,tiktoken", help="what to time besides construction")
    ap.add_argument("--vocabs", default="bytes,gpt2", help="vocabularies: bytes, gpt2")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    parts = set(args.parts.split(","))
    text = read_text(args.mb)
    lines = text.splitlines(keepends=True)
    print(f"text: {len(text.encode('utf-8')) / MB:.2f} MB, {len(lines):,} lines; load average before: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "text.txt"
        path.write_text(text)
        for name, (vocab, merges) in vocabularies().items():
            if name not in args.vocabs.split(","):
                continue
            for n in counts:
                specials = specials_of(n)
                r = bench_tinylm(vocab, merges, specials, text, lines, path, args.repeats, parts)
                row = {"vocab": name, "specials": n} | {k: v for k, v in r.items() if k != "ids"}
                if name == "gpt2" and "tiktoken" in parts:
                    tt = bench_tiktoken(specials, text, args.repeats, len(vocab) + 1)
                    if tt is not None:
                        if tt["ids"] != r["ids"]:
                            raise SystemExit(f"error: tinylm and tiktoken disagree with {n} special tokens")
                        row |= {"tiktoken_build_s": tt["build_s"], "tiktoken_encode_MBps": tt["encode_MBps"]}
                rows.append(row)
                cells = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
                print(f"{name:5s} {n:>6,} specials  {cells}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"mb": args.mb, "repeats": args.repeats, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
