"""The bad-input matrix as data: each case sets up files, runs one `tinylm` command and names the
words its one-line error must contain. test_bad_input_matrix.py runs every row;
`python tests/reliability/matrix.py` prints the table in docs/RELIABILITY.md with the messages
observed on this machine. FAULTS are the rows whose outcome is not "one error line, exit 2"
(Ctrl-C, a full disk): each runs the fault and asserts its own outcome."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"


@dataclass
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # builds inputs in a temp folder, returns the CLI arguments
    expect: list[str]  # words the error line must contain
    api: str  # the exception the library raises
    check: Callable[[Path], None] | None = None  # what else must hold afterwards (default: nothing written)
    env: Callable[[Path], dict] | None = None  # extra environment variables for the command (built in the temp folder)


class Skip(Exception):
    """Raised by a setup that cannot run here (mounting needs root); the test skips with the reason."""


def _tok_dir(d: Path) -> Path:
    from tinylm import Tokenizer, train_bpe

    out = d / "tok"
    if not out.exists():
        vocab, merges = train_bpe(FIXTURES / "corpus.en", 300, [EOT])
        Tokenizer(vocab, merges, [EOT]).save_dir(out)
    return out


def _write(d: Path, name: str, data: bytes) -> str:
    (d / name).write_bytes(data)
    return str(d / name)


def _truncated_vocab(d: Path) -> list[str]:
    tok = _tok_dir(d)
    text = (tok / "vocab.json").read_text()
    (tok / "vocab.json").write_text(text[: len(text) // 2])
    return ["encode", str(FIXTURES / "address.txt"), "-t", str(tok), "-o", str(d / "o.npy")]


def _disagreeing_merges(d: Path) -> list[str]:
    tok = _tok_dir(d)
    with open(tok / "merges.txt", "a") as f:
        f.write("Ġzq xj\n")
    return ["encode", str(FIXTURES / "address.txt"), "-t", str(tok), "-o", str(d / "o.npy")]


def _foreign_tokenizer_json(d: Path, change) -> list[str]:
    """`tinylm encode -t` a tokenizer.json (as tinylm writes it) edited by `change`."""
    import json

    obj = json.loads((_tok_dir(d) / "tokenizer.json").read_text())
    change(obj)
    path = _write(d, "foreign.json", json.dumps(obj, ensure_ascii=False).encode())
    return ["encode", str(FIXTURES / "address.txt"), "-t", path, "-o", str(d / "o.npy")]


def _bpe(path: str, *extra: str) -> list[str]:
    return ["train-bpe", path, "--vocab-size", "300", "--out", "OUT", *extra]


TOKENIZER_CASES = [
    Case("missing input file", lambda d: _bpe(str(d / "nope.txt")), ["not found"], "InputFileError"),
    Case("empty input file", lambda d: _bpe(_write(d, "e.txt", b"")), ["empty"], "InputFileError"),
    Case("directory holding no files as input", lambda d: _bpe(str(d)), ["directory"], "InputFileError"),
    Case("binary input file", lambda d: _bpe(_write(d, "b.bin", bytes(range(256)) * 40)), ["invalid UTF-8", "offset 128"], "InvalidUTF8Error"),
    Case("invalid UTF-8 in a corpus", lambda d: _bpe(_write(d, "u.txt", b"good text " * 500 + b"\xe2\x28\xa1")), ["invalid UTF-8", "offset 5000"], "InvalidUTF8Error"),
    Case("vocab_size below 256 + specials", lambda d: ["train-bpe", str(FIXTURES / "corpus.en"), "-v", "256", "-o", "OUT"], ["at least 256 + 1"], "ConfigError"),
    Case("duplicate special tokens", lambda d: ["train-bpe", str(FIXTURES / "corpus.en"), "-s", EOT, "-s", EOT, "-o", "OUT"], ["twice"], "ConfigError"),
    Case("empty special token", lambda d: ["train-bpe", str(FIXTURES / "corpus.en"), "-s", "", "-o", "OUT"], ["empty"], "ConfigError"),
    Case("truncated vocab.json", _truncated_vocab, ["not valid JSON"], "TokenizerFileError"),
    Case("merges that disagree with the vocabulary", _disagreeing_merges, ["does not match the vocabulary"], "TokenizerFileError"),
    Case("tokenizer.json with a normalizer", lambda d: _foreign_tokenizer_json(d, lambda o: o.update(normalizer={"type": "NFKC"})),
         ["foreign.json", "normalizer 'NFKC' is unsupported"], "TokenizerFileError"),
    Case("tokenizer.json of a WordPiece model", lambda d: _foreign_tokenizer_json(d, lambda o: o["model"].update(type="WordPiece")),
         ["model type 'WordPiece' is unsupported"], "TokenizerFileError"),
    Case("tokenizer.json entry outside GPT-2's byte table", lambda d: _foreign_tokenizer_json(d, lambda o: o["model"]["vocab"].update({"<｜x｜>": 9999})),
         ["entry '<｜x｜>' (id 9999)", "not spelled in GPT-2's byte mapping"], "TokenizerFileError"),
    Case("output folder that cannot be written", lambda d: _bpe(str(FIXTURES / "corpus.en")) + ["--out", _write(d, "f", b"x") + "/sub"], ["cannot write"], "OutputError"),
    Case("memory budget that cannot be read", lambda d: _bpe(str(FIXTURES / "corpus.en"), "--max-memory", "lots"), ["memory size"], "ConfigError"),
]

# --- corpora of shards (tinylm.corpus) ----------------------------------------------------------------
def _records(d: Path, name: str, *lines: str) -> str:
    import json

    good = json.dumps({"text": "a good document"})
    return _write(d, name, "\n".join([good, *lines, good]).encode() + b"\n")


def _encode(path: str, d: Path) -> list[str]:
    return ["encode", path, "-t", str(_tok_dir(d)), "-o", str(d / "o.npy")]


def _truncated(d: Path, name: str) -> str:
    import gzip
    import json

    import random

    rng = random.Random(0)  # text that compresses little: the half that is left decompresses into whole lines
    data = "".join(json.dumps({"text": f"document {i} " + rng.randbytes(3000).hex()}) + "\n" for i in range(100)).encode()
    if name.endswith(".zst"):
        import zstandard

        packed = zstandard.ZstdCompressor().compress(data)
    else:
        packed = gzip.compress(data)
    return _write(d, name, packed[: len(packed) // 2])


def _parquet(d: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["a", "b"]}), d / "c.parquet")
    return str(d / "c.parquet")


def _folder_with(d: Path, name: str) -> str:
    (d / "shards").mkdir()
    _records(d / "shards", "a.jsonl")
    _write(d / "shards", name, b"x")
    return str(d / "shards")


def _without_pyarrow(d: Path) -> dict:
    """PYTHONPATH with a `pyarrow` package whose import fails, as where it is not installed."""
    (d / "shadow" / "pyarrow").mkdir(parents=True)
    (d / "shadow" / "pyarrow" / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    return {"PYTHONPATH": str(d / "shadow")}


CORPUS_CASES = [
    Case("JSON Lines record that is not JSON", lambda d: _bpe(_records(d, "c.jsonl", "{not json")), ["c.jsonl: line 2: invalid JSON", "--skip-bad-records"], "CorpusError"),
    Case("JSON Lines record without the text field", lambda d: _encode(_records(d, "c.jsonl", '{"body": "x"}'), d), ["line 2: no field 'text'", "--text-field"], "CorpusError"),
    Case("JSON Lines text that is not a string", lambda d: _bpe(_records(d, "c.jsonl", '{"text": 42}')), ["line 2: field 'text' is a JSON int, not a string"], "CorpusError"),
    Case("truncated .jsonl.gz shard", lambda d: _bpe(_truncated(d, "c.jsonl.gz")), ["c.jsonl.gz: the gz stream is truncated or corrupt", "after line"], "CorpusError"),
    Case("truncated .jsonl.zst shard", lambda d: _encode(_truncated(d, "c.jsonl.zst"), d), ["c.jsonl.zst: the zst stream is truncated or corrupt", "after line"], "CorpusError"),
    Case("Parquet shard without the text column", lambda d: _bpe(_parquet(d)), ["c.parquet: no column 'text'", "columns: 'content'"], "CorpusError"),
    Case("unknown extension in a corpus folder", lambda d: _bpe(_folder_with(d, "notes.csv")), ["notes.csv: unknown corpus file extension '.csv'"], "CorpusError"),
    Case("corpus glob that matches nothing", lambda d: _bpe(str(d / "*.jsonl")), ["no corpus file matches"], "InputFileError"),
    Case("Parquet corpus without pyarrow installed", lambda d: _bpe(_parquet(d)), ["optional package 'pyarrow'", "pip install 'tinylm[corpus]'"], "MissingExtraError",
         env=_without_pyarrow),
]

# --- training, checkpoints, generation ---------------------------------------------------------------
TINY_MODEL = dict(vocab_size=257, context_length=16, d_model=32, num_layers=1, num_heads=4, d_ff=64)
CLI_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}  # tiny models: 1 thread is fastest
_MOUNTS: list[Path] = []


def _byte_tok(d: Path) -> Path:
    """A byte-level tokenizer folder: ids 0-255 are the bytes, 256 is <|endoftext|>."""
    from tinylm import Tokenizer

    out = d / "btok"
    if not out.exists():
        Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT]).save_dir(out)
    return out


def _ids(n: int = 3000):
    import numpy as np

    return np.resize(np.frombuffer(b"Once upon a time there was a cat. ", dtype=np.uint8).astype(np.uint16), n)


def _token_file(d: Path, name: str, ids) -> str:
    import numpy as np

    if name.endswith(".npy"):
        np.save(d / name, ids)
    else:
        ids.tofile(d / name)
    return str(d / name)


def _config(d: Path, **model) -> str:
    """cfg.toml for a 4-step run of a tiny model on a byte-level token file."""
    from tinylm.training.config import TrainConfig, to_toml

    cfg = TrainConfig.from_dict({
        "model": {**TINY_MODEL, **model},
        "data": {"train": _token_file(d, "tokens.npy", _ids())},
        "tokenizer": {"dir": str(_byte_tok(d))},
        "optim": {"lr_max": 3e-3, "lr_min": 3e-4, "warmup_iters": 2},
        "train": {"batch_size": 4, "max_steps": 4, "eval_interval": 100, "log_interval": 1, "checkpoint_interval": 100,
                  "progress": False, "out_dir": str(d / "out")},
    })
    (d / "cfg.toml").write_text(to_toml(cfg))
    return str(d / "cfg.toml")


def _train(d: Path, *extra: str) -> list[str]:
    return ["train", "--config", _config(d), "--out", "OUT", *extra]


def _out_of_vocab(d: Path) -> list[str]:
    ids = _ids()
    ids[1234] = 300  # encoded with a larger tokenizer than the model's 257 ids
    return _train(d, "--train-data", _token_file(d, "big.npy", ids))


def _wrong_bin_dtype(d: Path) -> list[str]:
    """uint16 ids in a raw .bin (as `tinylm encode` writes them, sidecar included) read as uint32."""
    from tinylm.tokenizer.token_arrays import encode_file

    encode_file(_load_byte_tok(d), FIXTURES / "address.txt", d / "t.bin", num_workers=1)
    return _train(d, "--train-data", str(d / "t.bin"), "--set", "data.dtype=uint32")


def _load_byte_tok(d: Path):
    from tinylm import Tokenizer

    return Tokenizer.from_dir(_byte_tok(d))


def _run(d: Path) -> Path:
    """A finished 2-step run folder (trained in this process): checkpoint.pt, config.toml, tokenizer."""
    from tinylm.training.config import load_config
    from tinylm.training.loop import train

    run = d / "run"
    if not (run / "checkpoint.pt").exists():
        train(load_config(_config(d), {"train.max_steps": 2, "train.out_dir": str(run)}))
    return run


def _truncate(run: Path) -> None:
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def _newer_format(run: Path) -> None:
    import torch

    from tinylm.training.checkpoint import FORMAT_VERSION

    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, run / "checkpoint.pt")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling would call os.mkdir(marker)
        return (os.mkdir, (str(self.marker),))


def _code_in_checkpoint(run: Path) -> None:
    import torch

    torch.save({"format_version": 1, "iteration": 0, "model": {}, "x": _RunsCode(run.parent / "pwned")}, run / "checkpoint.pt")


def _no_code_ran(d: Path) -> None:
    assert not (d / "pwned").exists()


def _resume_after(change: Callable[[Path], None], *extra: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        change(_run(d))
        return ["train", "--resume", str(d / "run"), "--no-progress", *extra]

    return setup


def _generate_after(change: Callable[[Path], None], prompt: str = "Once") -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        change(_run(d))
        return ["generate", "--checkpoint", str(d / "run"), "--prompt", prompt, "--max-new-tokens", "4"]

    return setup


def _generate_with(*flags: str) -> Callable[[Path], list[str]]:
    """generate on a good run with extra (bad) flags."""
    def setup(d: Path) -> list[str]:
        return _generate_after(lambda run: None)(d) + list(flags)

    return setup


def _checkpoint_beside_bigger_tokenizer(d: Path) -> list[str]:
    """A run's checkpoint (257 ids) copied into a folder whose tokenizer has 300 ids."""
    import shutil

    other = d / "other"
    shutil.copytree(_tok_dir(d), other)
    shutil.copy(_run(d) / "checkpoint.pt", other)
    return ["generate", "--checkpoint", str(other), "--prompt", "Once"]


def _mount_tmpfs(where: Path, options: str) -> Path:
    """A tmpfs at `where` (unmounted by run_case/run_fault); Skip where this machine cannot mount."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode:
        raise Skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    _MOUNTS.append(where)
    return where


def unmount_all() -> None:
    while _MOUNTS:
        subprocess.run(["umount", "-l", str(_MOUNTS.pop())], capture_output=True)


def _diverged_state_is_finite(d: Path) -> None:
    import torch

    from tinylm.training.checkpoint import read_checkpoint

    payload = read_checkpoint(d / "out")
    assert payload["iteration"] >= 1 and all(bool(torch.isfinite(v).all()) for v in payload["model"].values())


def _nothing_written(d: Path) -> None:
    assert not (d / "out" / "checkpoint.pt").exists()


TRAINING_CASES = [
    Case("token ids >= the model's vocab_size", _out_of_vocab, ["holds token id 300", "outside the model's vocabulary of 257"], "DataError", _nothing_written),
    Case("raw .bin read with the wrong dtype", _wrong_bin_dtype, ["holds uint16 ids", "not uint32"], "DataError", _nothing_written),
    Case("raw .bin that is not a whole number of tokens", lambda d: _train(d, "--train-data", _write(d, "odd.bin", b"\x01\x00\x02")), ["3 bytes", "not a whole number of uint16 tokens"], "DataError", _nothing_written),
    Case(".npy token file of floats", lambda d: _train(d, "--train-data", _token_file(d, "f.npy", _ids().astype("float32"))), ["float32 array", "expected a 1-d uint16 or uint32"], "DataError", _nothing_written),
    Case("token file shorter than one training example", lambda d: _train(d, "--train-data", _token_file(d, "short.npy", _ids(10))), ["has 10 tokens", "context_length + 1 = 17"], "DataError", _nothing_written),
    Case("d_model not divisible by num_heads", lambda d: _train(d, "--set", "model.d_model=30"), ["d_model (30) must be divisible by num_heads (4)"], "ConfigError", _nothing_written),
    Case("odd head dimension with RoPE", lambda d: _train(d, "--set", "model.d_model=12"), ["head dimension", "= 3 must be even"], "ConfigError", _nothing_written),
    Case("truncated checkpoint (train --resume)", _resume_after(_truncate), ["truncated or corrupt"], "CheckpointError"),
    Case("truncated checkpoint (generate)", _generate_after(_truncate), ["truncated or corrupt"], "CheckpointError"),
    Case("checkpoint from another model config (train --resume)", _resume_after(lambda run: None, "--set", "model.d_model=64"), ["another model config", "d_model=32 in checkpoint vs 64"], "CheckpointError"),
    Case("checkpoint beside a tokenizer with more ids (generate)", _checkpoint_beside_bigger_tokenizer, ["has 300 tokens but the model only 257"], "ConfigError"),
    Case("checkpoint from a newer format version (train --resume)", _resume_after(_newer_format), ["format version 2", "upgrade tinylm"], "CheckpointError"),
    Case("checkpoint from a newer format version (generate)", _generate_after(_newer_format), ["format version 2", "upgrade tinylm"], "CheckpointError"),
    Case("checkpoint whose unpickling would run code (generate)", _generate_after(_code_in_checkpoint), ["not loaded", "could run code"], "CheckpointError", _no_code_ran),
    Case("non-finite sampling temperature (generate)", _generate_with("--temperature", "nan"), ["temperature must be a finite number >= 0"], "ConfigError"),
    Case("negative sampling temperature (generate)", _generate_with("--temperature", "-1"), ["temperature must be a finite number >= 0"], "ConfigError"),
    Case("top-p outside (0, 1] (generate)", _generate_with("--top-p", "0"), ["top_p must be in (0, 1]"], "ConfigError"),
    Case("special token in the generate prompt", _generate_after(lambda run: None, f"Once{EOT}upon"), ["special token", "<|endoftext|>"], "SpecialTokenNotAllowedError"),
    Case("run folder where a file is", lambda d: _train(d) + ["--out", _write(d, "f", b"x") + "/run"], ["cannot write to output folder", "Not a directory"], "OutputError", _nothing_written),
    Case("run folder on a read-only file system", lambda d: _train(d) + ["--out", str(_mount_tmpfs(d / "ro", "size=1m,ro") / "run")], ["cannot write to output folder", "Read-only file system"], "OutputError", _nothing_written),
    Case("NaN/inf loss (absurd learning rate)", lambda d: _train(d, "--lr", "1e30", "--max-steps", "6"), ["became nan", "last good state", "--resume"], "TrainingDivergedError", _diverged_state_is_finite),
]


# --- export ------------------------------------------------------------------------------------------
def _export_ablation(field: str, value: str) -> Callable[[Path], list[str]]:
    """Export a 1-step run of a model Llama cannot express."""

    def setup(d: Path) -> list[str]:
        from tinylm.training.config import load_config
        from tinylm.training.loop import train

        run = d / "run"
        train(load_config(_config(d, **{field: value}), {"train.max_steps": 1, "train.out_dir": str(run)}))
        return ["export", str(run), "--out", "OUT"]

    return setup


EXPORT_CASES = [
    *(
        Case(f"export of a model Llama cannot express ({field}={value})", _export_ablation(field, value), ["cannot export as Llama", f"model.{field}='{value}'"], "ConfigError")
        for field, value in (("norm", "post"), ("norm", "none"), ("position", "none"), ("ffn", "silu"))
    ),
    Case("export of a folder without a checkpoint", lambda d: ["export", str(_byte_tok(d)), "--out", "OUT"], ["no checkpoint at", "checkpoint.pt"], "CheckpointError"),
    Case("export into a folder where a file is", lambda d: ["export", str(_run(d)), "--out", _write(d, "f", b"x") + "/hf"], ["cannot write to output folder", "Not a directory"], "OutputError"),
]

CASES = TOKENIZER_CASES + CORPUS_CASES + TRAINING_CASES + EXPORT_CASES


def _args(case: Case, folder: Path) -> list[str]:
    return [a.replace("OUT", str(folder / "out")) if a == "OUT" else a for a in case.setup(folder)]


# Commands that import torch run in this process through click's CliRunner: the same `main`, its exit
# status and its stderr, without ~2 s of torch import per row (an unexpected exception shows up as
# exit status 1 with its traceback appended to stderr). The tokenizer rows, the fault rows and the
# kill tests run real processes.
IN_PROCESS = {"train", "generate", "export"}


def run_case(case: Case, folder: Path) -> subprocess.CompletedProcess:
    try:
        with _one_torch_thread():  # tiny models on a shared machine: one thread is fastest
            args = _args(case, folder)
            if args[0] in IN_PROCESS:
                return _invoke(args)
        env = {**CLI_ENV, **case.env(folder)} if case.env else CLI_ENV
        return subprocess.run([sys.executable, "-m", "tinylm", *args], capture_output=True, text=True, timeout=600, env=env)
    finally:
        unmount_all()


def _invoke(args: list[str]) -> subprocess.CompletedProcess:
    import traceback

    from click.testing import CliRunner

    from tinylm.cli import main

    r = CliRunner().invoke(main, args)
    stderr = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(r.exception))
    return subprocess.CompletedProcess(["tinylm", *args], r.exit_code, r.stdout, stderr)


class _one_torch_thread:
    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)


# --- faults: outcomes other than "one error line, exit 2" ------------------------------------------------
@dataclass
class Fault:
    name: str
    run: Callable[[Path], subprocess.CompletedProcess]  # causes the fault and asserts the outcome
    outcome: str  # what the run asserts, in words


def _ctrl_c(d: Path) -> subprocess.CompletedProcess:
    from tinylm.training.checkpoint import read_checkpoint
    from tinylm.training.report import read_metrics

    run = d / "out"
    cmd = [sys.executable, "-m", "tinylm", *[str(run) if a == "OUT" else a for a in _train(d, "--max-steps", "100000", "--no-progress")]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV)
    deadline = time.time() + 300  # a guard against a hang, generous for a loaded machine
    while not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").stat().st_size == 0:  # training has begun
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1] if proc.poll() is not None else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    step = read_checkpoint(run)["iteration"]
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [f"stopped at step {step}; checkpoint saved in {run}/checkpoint.pt", f"continue with: tinylm train --resume {run}"], err
    assert read_metrics(run / "metrics.jsonl")[-1]["step"] == step  # every finished step logged and saved
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _full_disk(d: Path) -> subprocess.CompletedProcess:
    from tinylm.generate import generate, load_run
    from tinylm.training.checkpoint import read_checkpoint

    run = _mount_tmpfs(d / "disk", "size=2m") / "run"
    # This model's checkpoint is ~1.4 MB: the one of step 2 fits in 2 MB, step 4's beside it (the atomic save's temporary) does not.
    cfg = _config(d, d_model=64, num_layers=2, d_ff=128)
    cmd = [sys.executable, "-m", "tinylm", "train", "--config", cfg, "--out", str(run), "--max-steps", "6", "--checkpoint-interval", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=CLI_ENV)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: cannot write checkpoint {run}/checkpoint.pt: No space left on device"), r.stderr
    assert read_checkpoint(run)["iteration"] == 2 and not list(run.glob(".tmp-*"))
    model, tokenizer = load_run(run)  # the previous checkpoint is still a working model
    generate(model, tokenizer, "Once", 4, temperature=0)
    return r


FAULTS = [
    Fault("Ctrl-C (SIGINT) during training", _ctrl_c, "exit 130; the step in progress finishes, is logged and saved; two lines say where and how to resume"),
    Fault("full disk during a checkpoint save (2 MB tmpfs)", _full_disk, "exit 2, one error line; the previous checkpoint (step 2) is intact, loads and generates; no temporary left"),
]


def run_fault(fault: Fault, folder: Path) -> subprocess.CompletedProcess:
    try:
        return fault.run(folder)
    finally:
        unmount_all()


def _shown(text: str, tmp: str) -> str:
    """A message as a markdown code span: temp folder as …, pipes escaped, lines joined by /."""
    text = text.strip().replace(tmp, "…").replace("|", "\\|").replace("\n", " / ")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def main() -> None:
    print("| case | command | observed message (exit status) | API exception |")
    print("|---|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                r = run_case(case, Path(tmp))
            except Skip as skip:
                print(f"| {case.name} | | skipped here: {skip} | `{case.api}` |")
                continue
            args = r.args[1:] if r.args[0] == "tinylm" else r.args[3:]
            command = args[0] + (" --resume" if "--resume" in args else "")
            print(f"| {case.name} | `tinylm {command}` | {_shown(r.stderr, tmp)} ({r.returncode}) | `{case.api}` |")
    print()
    print("| fault | asserted outcome | observed message (exit status) |")
    print("|---|---|---|")
    for fault in FAULTS:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                r = run_fault(fault, Path(tmp))
            except Skip as skip:
                print(f"| {fault.name} | {fault.outcome} | skipped here: {skip} |")
                continue
            print(f"| {fault.name} | {fault.outcome} | {_shown(r.stderr, tmp)} ({r.returncode}) |")


if __name__ == "__main__":
    main()
