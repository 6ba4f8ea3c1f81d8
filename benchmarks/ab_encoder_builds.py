"""Two builds of the C encoder (tinylm/tokenizer/_bpe_encode*.so) side by side in one process.

How the encoder changes of issue 12 were kept or dropped (docs/BENCHMARKS.md, "Issue 12, third
session"): both builds are loaded under the module's name from their own files, each makes an
Encoder for GPT-2's files, and the first 20 MB of data/bench_en.txt are encoded alternately,
fresh (a new Encoder) and warm (the same text again on one Encoder), into uint16 ids with
<|endoftext|> as special token. Prints MB/s medians and the median of the per-pair time ratios.

    cp tinylm/tokenizer/_bpe_encode*.so /tmp/before.so        # build A
    # change the C, then: python setup.py build_ext --inplace
    cp tinylm/tokenizer/_bpe_encode*.so /tmp/after.so         # build B
    .venv/bin/python benchmarks/ab_encoder_builds.py /tmp/before.so /tmp/after.so [--rounds 7]

With --processes each measurement runs in a new process (the builds alternating), as
bench_encode.py measures a fresh Tokenizer: fresh is then the process's first encode, paying for
the memory it touches first (on a VM, pages the host has not backed yet cost the most).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs=2, type=Path, help="two built _bpe_encode shared objects")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--processes", action="store_true", help="each measurement in a new process")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.processes:
        return in_processes(args)
    from tinylm.tokenizer import _native
    from tinylm.tokenizer.bpe import Tokenizer

    text = (ROOT / "data" / "bench_en.txt").read_bytes()[: int(args.mb * 1e6)].decode("utf-8", "ignore")
    tok = Tokenizer.from_files(ROOT / "tests/fixtures/gpt2_vocab.json", ROOT / "tests/fixtures/gpt2_merges.txt", ["<|endoftext|>"])
    letters, numbers, spaces = _native.unicode_class_ranges()
    specials = ((b"<|endoftext|>", 50256),)
    modules = {}
    for path in args.builds:
        spec = importlib.util.spec_from_file_location("tinylm.tokenizer._bpe_encode", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        modules[path.name] = mod

    def new(mod):
        return mod.Encoder(tok._byte_ids, tok._merge_triples, letters, numbers, spaces)

    def run(enc):  # builds from before Encoder.encode had special tokens encode the text without them
        return enc.encode(text, specials, 2) if hasattr(enc, "encode") else enc.encode_ordinary_bytes(text, 2)

    if args.child:  # one build, one new Encoder: fresh, then warm, on the text as a str
        enc = new(next(iter(modules.values())))
        t = time.perf_counter()
        run(enc)
        t1 = time.perf_counter()
        run(enc)
        print(t1 - t, time.perf_counter() - t1)
        return 0
    warm_encoders = {name: new(mod) for name, mod in modules.items()}
    for enc in warm_encoders.values():
        run(enc)
    fresh = {name: [] for name in modules}
    warm = {name: [] for name in modules}
    for _ in range(args.rounds):
        for name, mod in modules.items():
            enc = new(mod)
            t = time.perf_counter()
            run(enc)
            fresh[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            run(warm_encoders[name])
            warm[name].append(time.perf_counter() - t)
    report(fresh, warm, args.mb)
    return 0


def report(fresh: dict[str, list[float]], warm: dict[str, list[float]], mb: float, note: str = "") -> None:
    """MB/s medians per build and the median of the per-pair time ratios (first build / second)."""
    for name in fresh:
        print(f"{name:24s} fresh {mb / statistics.median(fresh[name]):6.1f} MB/s  warm {mb / statistics.median(warm[name]):6.1f} MB/s{note}")
    a, b = fresh
    print(f"time {a} / {b}, median of pairs: warm {statistics.median(x / y for x, y in zip(warm[a], warm[b])):.3f}, "
          f"fresh {statistics.median(x / y for x, y in zip(fresh[a], fresh[b])):.3f}")


def in_processes(args) -> int:
    """Each round runs one new process per build (alternating): its first encode (fresh) and a second (warm)."""
    import subprocess

    fresh = {p.name: [] for p in args.builds}
    warm = {p.name: [] for p in args.builds}
    for _ in range(args.rounds):
        for path in args.builds:
            out = subprocess.run([sys.executable, __file__, str(path), str(path), "--child", "--mb", str(args.mb)],
                                 check=True, capture_output=True, text=True).stdout.split()
            fresh[path.name].append(float(out[0]))
            warm[path.name].append(float(out[1]))
    report(fresh, warm, args.mb, "  (new processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
