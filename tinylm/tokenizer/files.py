"""GPT-2's byte<->unicode mapping and the vocab.json / merges.txt file format.

GPT-2 writes each byte as one printable character so that token strings survive JSON and
whitespace-separated merges files (space becomes 'Ġ', newline 'Ċ'). These files round-trip with
Hugging Face `tokenizers` and load into tiktoken.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from tinylm.errors import InputFileError, OutputError, TokenizerFileError


VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
SPECIAL_TOKENS_FILE = "special_tokens.json"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 table: printable bytes map to themselves, the rest to code points from 256 up."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_str(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def str_to_token(text: str, where: str = "") -> bytes:
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in text)
    except KeyError as exc:
        raise TokenizerFileError(f"{where}token {text!r} has a character outside GPT-2's byte mapping: {exc.args[0]!r}") from None


def _read_text(path: str | os.PathLike, what: str) -> str:
    from tinylm.tokenizer.chunking import check_input_file

    p = check_input_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {what} file {p}: {exc.strerror}") from None
    if not data.strip():
        raise InputFileError(f"{what} file is empty: {p}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TokenizerFileError(f"{what} file {p} is not valid UTF-8 (byte offset {exc.start})") from None


def load_vocab(path: str | os.PathLike) -> dict[int, bytes]:
    """Read vocab.json (token string -> id) into id -> bytes."""
    text = _read_text(path, "vocab")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerFileError(f"vocab file {path} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}") from None
    if not isinstance(raw, dict):
        raise TokenizerFileError(f"vocab file {path} must hold a JSON object of token -> id")
    vocab: dict[int, bytes] = {}
    for tok, idx in raw.items():
        if not isinstance(idx, int) or idx < 0:
            raise TokenizerFileError(f"vocab file {path}: id for {tok!r} is not a non-negative integer: {idx!r}")
        if idx in vocab:
            raise TokenizerFileError(f"vocab file {path}: id {idx} is used twice")
        vocab[idx] = str_to_token(tok, f"vocab file {path}: ")
    return vocab


def load_merges(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """Read merges.txt; a '#version' first line (as GPT-2's file has) is skipped."""
    text = _read_text(path, "merges")
    merges = []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise TokenizerFileError(f"merges file {path}, line {lineno}: expected two tokens separated by one space, got {line!r}")
        where = f"merges file {path}, line {lineno}: "
        merges.append((str_to_token(parts[0], where), str_to_token(parts[1], where)))
    return merges


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename: no half-written file."""
    atomic_write_files({path: data})


def remove_stale_temp_files(path: str | os.PathLike) -> None:
    """Delete temporaries that a killed earlier write of `path` left behind (`.name.tmp-PID`)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            stale.unlink()
        except OSError:
            pass


def atomic_write_files(files: dict[str | os.PathLike, bytes]) -> None:
    """Write several files so that none is visible until all are fully on disk.

    Every file is written and fsynced under a temporary name first; only then are they renamed
    into place, so a kill or a full disk while writing leaves the previous files (or none). Only
    the renames themselves, microseconds apart, are not one atomic step.
    """
    pending: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            remove_stale_temp_files(path)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            pending.append((tmp, path))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in pending:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in pending:
            try:
                tmp.unlink()
            except OSError:
                pass
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def vocab_json_bytes(vocab: dict[int, bytes]) -> bytes:
    obj = {token_to_str(tok): idx for idx, tok in sorted(vocab.items())}
    return json.dumps(obj, ensure_ascii=False, indent=0).encode("utf-8")


def merges_txt_bytes(merges: list[tuple[bytes, bytes]]) -> bytes:
    lines = ["#version: 0.2"] + [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges]
    return ("\n".join(lines) + "\n").encode("utf-8")


def special_tokens_json_bytes(special_tokens: list[str]) -> bytes:
    return json.dumps({"special_tokens": list(special_tokens)}, ensure_ascii=False).encode("utf-8")


def save_vocab(vocab: dict[int, bytes], path: str | os.PathLike) -> None:
    atomic_write_bytes(path, vocab_json_bytes(vocab))


def save_merges(merges: list[tuple[bytes, bytes]], path: str | os.PathLike) -> None:
    atomic_write_bytes(path, merges_txt_bytes(merges))


def ensure_output_dir(path: str | os.PathLike) -> Path:
    """Create an output folder and prove it is writable before any long work starts."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".tinylm-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {p}: {exc.strerror or exc}") from None
    return p


def load_special_tokens(path: str | os.PathLike) -> list[str]:
    """Special tokens recorded beside a vocabulary; none when the file is absent (GPT-2's files)."""
    if not Path(path).exists():
        return []
    try:
        obj = json.loads(_read_text(path, "special tokens"))
        tokens = obj["special_tokens"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise TokenizerFileError(f"{path} must hold {{\"special_tokens\": [...]}}") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise TokenizerFileError(f"{path}: special_tokens must be a list of strings")
    return tokens
