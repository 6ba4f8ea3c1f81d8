"""Reading corpora of shards: BPE counting and encoding on one corpus in every format, against its .txt.

Text: the first --mb MB of data/prose_en.txt (31.6 MB of English prose, 12,295 documents), cut at a
document boundary, split into its documents. The same documents are written as: one .txt
(documents joined by <|endoftext|>, the reference), one .jsonl, .jsonl.gz (level 6), .jsonl.zst
(level 3), .parquet (pyarrow defaults: snappy, row groups of 1,000 documents), and a folder of
8 .jsonl.zst shards. Tokenizer: GPT-2's files from tests/fixtures.

Each configuration runs in a fresh subprocess per repeat, with --workers processes (default: all
cores); the time is the operation's own (timed inside the child: no interpreter start, imports or
tokenizer load), the memory the peak summed PSS of the process and its workers (see _measure.py):

  count    tinylm.tokenizer.train.train_bpe's counting step: count_pretokens for the .txt (the
           original byte-range path), count_corpus_pretokens for the others
  encode   tinylm.tokenizer.token_arrays.encode_file(tok, corpus, out.npy)

Every result is checked against the .txt's: identical pre-token counts (their digest) and
identical token arrays; a mismatch fails the benchmark.

    .venv/bin/python benchmarks/bench_corpus.py                        # 30 MB, 3 repeats
    .venv/bin/python benchmarks/bench_corpus.py --mb 2 --repeats 1     # smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import MB, RESULT_MARK, ROOT, busy_warning, cut_text, ensure_corpus, machine_info, median, print_table, ratio, run_measured  # noqa: E402

EOT = "<|endoftext|>"
FIXTURES = ROOT / "tests" / "fixtures"


def write_formats(text_path: Path, folder: Path) -> dict[str, Path]:
    """The corpus in every format (the .txt is text_path itself)."""
    import gzip
    import json as js

    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    docs = text_path.read_text(encoding="utf-8").split(EOT)
    if docs and docs[-1] == "":
        docs.pop()  # cut_text ends the text with a separator: the .txt then ends with an empty document
        (folder / "corpus.txt").write_text(EOT.join(docs), encoding="utf-8")
    lines = "".join(js.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    out = {".txt": folder / "corpus.txt", ".jsonl": folder / "corpus.jsonl", ".jsonl.gz": folder / "corpus.jsonl.gz",
           ".jsonl.zst": folder / "corpus.jsonl.zst", ".parquet": folder / "corpus.parquet", "8 × .jsonl.zst": folder / "shards"}
    out[".jsonl"].write_bytes(lines)
    out[".jsonl.gz"].write_bytes(gzip.compress(lines, 6))
    out[".jsonl.zst"].write_bytes(zstandard.ZstdCompressor(level=3).compress(lines))
    pq.write_table(pa.table({"text": pa.array(docs, pa.string())}), out[".parquet"], row_group_size=1000)
    out["8 × .jsonl.zst"].mkdir()
    per = -(-len(docs) // 8)
    for i in range(8):
        part = "".join(js.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs[i * per : (i + 1) * per]).encode("utf-8")
        (out["8 × .jsonl.zst"] / f"{i:02d}.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(part))
    return out


def child(op: str, path: str, workers: int, out: str) -> None:
    """One measured run: print the seconds of the operation (not the imports or the tokenizer's load) and a digest of what it computed."""
    import time

    from tinylm.corpus import is_single_plain_text

    if op == "count":
        from tinylm.tokenizer.train import count_corpus_pretokens, count_pretokens

        t0 = time.perf_counter()
        if is_single_plain_text(path):
            counts = count_pretokens(path, [EOT], workers)
        else:
            counts = count_corpus_pretokens(path, [EOT], num_workers=workers)[0]
        seconds = time.perf_counter() - t0
        digest = hashlib.sha256(repr(sorted(counts.items_bytes())).encode()).hexdigest()
    else:
        import numpy as np

        from tinylm import Tokenizer
        from tinylm.tokenizer.token_arrays import encode_file

        tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])
        tok.encode("warm")
        t0 = time.perf_counter()
        encode_file(tok, path, out, num_workers=workers)
        seconds = time.perf_counter() - t0
        digest = hashlib.sha256(np.load(out).tobytes()).hexdigest()
    print(RESULT_MARK + json.dumps({"digest": digest, "seconds": seconds}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", nargs=4, metavar=("OP", "PATH", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        op, path, workers, out = args.child
        return child(op, path, int(workers), out)
    note = busy_warning()
    info = machine_info()
    rows, results = [], []
    with tempfile.TemporaryDirectory(dir=ROOT / "data" if (ROOT / "data").exists() else None) as tmp:
        folder = Path(tmp)
        size = cut_text(ensure_corpus("prose_en.txt"), int(args.mb * MB), folder / "cut.txt")
        formats = write_formats(folder / "cut.txt", folder)
        text_bytes = formats[".txt"].stat().st_size
        for op in ("count", "encode"):
            reference = None
            base = None
            for name, path in formats.items():
                runs = [run_measured([sys.executable, __file__, "--child", op, str(path), str(args.workers), str(folder / "o.npy")], f"{op} {name}")
                        for _ in range(args.repeats)]
                digest = runs[0].result["digest"]
                if reference is None:
                    reference = digest
                if any(r.result["digest"] != reference for r in runs):
                    raise SystemExit(f"error: {op} on {name} differs from the .txt's result")
                wall = median([r.result["seconds"] for r in runs])
                peak = max(r.peak_pss_bytes for r in runs) / MB
                base = base or wall
                disk = sum(f.stat().st_size for f in ([path] if path.is_file() else path.iterdir()))
                rows.append([op, name, f"{disk / MB:.1f}", f"{wall:.2f}", f"{text_bytes / MB / wall:.1f}", f"{ratio(wall, base):.2f}×", f"{peak:.0f}"])
                results.append({"op": op, "format": name, "disk_mb": disk / MB, "median_s": wall, "text_mb_per_s": text_bytes / MB / wall,
                                "peak_pss_mb": peak, "seconds": [r.result["seconds"] for r in runs]})
    print(f"{text_bytes / MB:.1f} MB of text (cut: {size / MB:.1f} MB), {args.workers} worker(s), median of {args.repeats}; "
          f"load average at start {info['loadavg_at_start'][0]:.2f} on {info['cpu_count']} CPUs")
    if note:
        print(note)
    print_table(["op", "format", "on disk (MB)", "median (s)", "text MB/s", "time vs .txt", "peak PSS (MB)"], rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
