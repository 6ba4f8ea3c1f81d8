"""The bad-input matrix as data: each case sets up files, runs one `tinylm` command and names the
words its one-line error must contain. test_bad_input_matrix.py runs every row;
`python tests/reliability/matrix.py` prints the table in docs/RELIABILITY.md with the messages
observed on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
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


def _bpe(path: str, *extra: str) -> list[str]:
    return ["train-bpe", path, "--vocab-size", "300", "--out", "OUT", *extra]


TOKENIZER_CASES = [
    Case("missing input file", lambda d: _bpe(str(d / "nope.txt")), ["not found"], "InputFileError"),
    Case("empty input file", lambda d: _bpe(_write(d, "e.txt", b"")), ["empty"], "InputFileError"),
    Case("directory as input file", lambda d: _bpe(str(d)), ["directory"], "InputFileError"),
    Case("binary input file", lambda d: _bpe(_write(d, "b.bin", bytes(range(256)) * 40)), ["invalid UTF-8", "offset 128"], "InvalidUTF8Error"),
    Case("invalid UTF-8 in a corpus", lambda d: _bpe(_write(d, "u.txt", b"good text " * 500 + b"\xe2\x28\xa1")), ["invalid UTF-8", "offset 5000"], "InvalidUTF8Error"),
    Case("vocab_size below 256 + specials", lambda d: ["train-bpe", str(FIXTURES / "corpus.en"), "-v", "256", "-o", "OUT"], ["at least 256 + 1"], "ConfigError"),
    Case("duplicate special tokens", lambda d: ["train-bpe", str(FIXTURES / "corpus.en"), "-s", EOT, "-s", EOT, "-o", "OUT"], ["twice"], "ConfigError"),
    Case("empty special token", lambda d: ["train-bpe", str(FIXTURES / "corpus.en"), "-s", "", "-o", "OUT"], ["empty"], "ConfigError"),
    Case("truncated vocab.json", _truncated_vocab, ["not valid JSON"], "TokenizerFileError"),
    Case("merges that disagree with the vocabulary", _disagreeing_merges, ["does not match the vocabulary"], "TokenizerFileError"),
    Case("output folder that cannot be written", lambda d: _bpe(str(FIXTURES / "corpus.en")) + ["--out", _write(d, "f", b"x") + "/sub"], ["cannot write"], "OutputError"),
    Case("memory budget that cannot be read", lambda d: _bpe(str(FIXTURES / "corpus.en"), "--max-memory", "lots"), ["memory size"], "ConfigError"),
]

CASES = TOKENIZER_CASES


def run_case(case: Case, folder: Path) -> subprocess.CompletedProcess:
    args = [a.replace("OUT", str(folder / "out")) if a == "OUT" else a for a in case.setup(folder)]
    return subprocess.run([sys.executable, "-m", "tinylm", *args], capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def main() -> None:
    print("| case | command | observed message (exit status) | API exception |")
    print("|---|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_case(case, Path(tmp))
            args = " ".join(case.setup(Path(tmp))[:1])
            msg = r.stderr.strip().replace(tmp, "…").replace("|", "\\|")
            print(f"| {case.name} | `tinylm {args}` | `{msg}` ({r.returncode}) | `{case.api}` |")


if __name__ == "__main__":
    main()
