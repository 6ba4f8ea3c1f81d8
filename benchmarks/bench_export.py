"""`tinylm export` of a run: wall time, peak memory and file size, beside transformers' own save.

    python benchmarks/bench_export.py                         # the TinyStories model, 5 repeats
    python benchmarks/bench_export.py --preset gpt2-small --repeats 3

Builds a run folder (random weights of the preset, a byte-level tokenizer), then, each in a fresh
process so peak memory is the export's own: `tinylm.export.export_llama` (read the checkpoint,
map the weights, write the folder), and for comparison `LlamaForCausalLM.save_pretrained` of the
same weights already in memory (write only) and `AutoModelForCausalLM.from_pretrained` of the
export (the reader's side). The exported model's logits are checked against tinylm's once.
Reports medians of wall-clock time and the median peak RSS (VmHWM) of the child process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
from tinylm.peak_memory import peak_rss_mb
task, run, out = sys.argv[1:4]
if task == "tinylm-export":
    from tinylm.export import export_llama
    t = time.perf_counter(); export_llama(run, out); seconds = time.perf_counter() - t
elif task == "hf-save":
    import transformers
    from tinylm.export import llama_config, llama_state_dict
    from tinylm.generate import load_run
    transformers.logging.set_verbosity_error()
    model, _ = load_run(run)
    cfg = {k: v for k, v in llama_config(model.config).items() if k not in ("architectures", "model_type")}
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))
    hf.load_state_dict(llama_state_dict(model))
    del model
    t = time.perf_counter(); hf.save_pretrained(out); seconds = time.perf_counter() - t
elif task == "hf-load":
    import transformers
    transformers.logging.set_verbosity_error()
    t = time.perf_counter(); transformers.AutoModelForCausalLM.from_pretrained(run); seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb()}))
"""


def make_run(folder: Path, preset_name: str) -> Path:
    import torch

    from tinylm import Tokenizer
    from tinylm.model import TransformerLM
    from tinylm.model.accounting import preset
    from tinylm.training.checkpoint import save_checkpoint

    config = preset(preset_name)
    torch.manual_seed(0)
    model = TransformerLM(config)
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save_dir(folder)
    save_checkpoint(model, None, 0, folder / "checkpoint.pt", model_config=config.to_dict())
    return folder


def child(task: str, run: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, task, str(run), str(out)], capture_output=True, text=True, check=False)
    if r.returncode:
        raise SystemExit(f"{task} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_logits(run: Path, out: Path) -> float:
    import torch
    import transformers

    from tinylm.generate import load_run

    transformers.logging.set_verbosity_error()
    model, _ = load_run(run)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 256, (1, min(64, model.config.context_length)), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((model.eval()(ids) - hf(ids).logits).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tinystories")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = make_run(tmp / "run", args.preset)
        results: dict[str, list[dict]] = {"tinylm-export": [], "hf-save": [], "hf-load": []}
        for i in range(args.repeats):  # interleaved, so load changes hit every variant alike
            results["tinylm-export"].append(child("tinylm-export", run, tmp / f"tl{i}"))
            results["hf-save"].append(child("hf-save", run, tmp / f"hf{i}"))
            results["hf-load"].append(child("hf-load", tmp / f"tl{i}", tmp))
        size = (tmp / "tl0" / "model.safetensors").stat().st_size
        diff = check_logits(run, tmp / "tl0")
    print(f"preset {args.preset}: model.safetensors {size / 1e6:,.1f} MB; max |logit difference| vs tinylm {diff:.2e}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'step':<44} {'median s':>9} {'median peak RSS MB':>19}")
    names = {
        "tinylm-export": "tinylm export (read checkpoint, map, write)",
        "hf-save": "transformers save_pretrained (write only)",
        "hf-load": "transformers from_pretrained of the export",
    }
    for key, rows in results.items():
        seconds = statistics.median(r["seconds"] for r in rows)
        peak = statistics.median(r["peak_mb"] for r in rows)
        print(f"{names[key]:<44} {seconds:>9.2f} {peak:>19,.0f}")


if __name__ == "__main__":
    main()
