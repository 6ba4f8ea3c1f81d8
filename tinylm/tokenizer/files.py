"""GPT-2's byte<->unicode mapping and the vocab.json / merges.txt file format.

GPT-2 writes each byte as one printable character so that token strings survive JSON and
whitespace-separated merges files (space becomes 'Ġ', newline 'Ċ'). These files round-trip with
Hugging Face `tokenizers` and load into tiktoken.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain, repeat
from pathlib import Path

from tinylm.errors import InputFileError, TokenizerFileError
from tinylm.io import atomic_write_bytes, check_input_file


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


@lru_cache(maxsize=1)
def _to_gpt2_chars() -> dict[int, str]:
    """str.translate table: the Latin-1 character of each byte -> GPT-2's character for it."""
    return {b: c for b, c in bytes_to_unicode().items()}


@lru_cache(maxsize=1)
@lru_cache(maxsize=1)
def _gpt2_byte_table():
    """int16[65536]: GPT-2's character (a BMP code point) -> its byte, every other code point -> -1."""
    import numpy as np

    table = np.full(65536, -1, dtype=np.int16)
    for c, b in unicode_to_bytes().items():
        table[ord(c)] = b
    return table


def _decode_gpt2_parts(parts: list[str]) -> list[bytes] | None:
    """[str_to_token(p) for p in parts] in a few vectorised calls; None when a part holds a
    character outside GPT-2's table (or a newline), for the caller's checking path.

    The parts are joined with newlines (not a GPT-2 character), read as UTF-16 code units (a
    character past the BMP becomes surrogates, which are not GPT-2's either) and mapped through
    _gpt2_byte_table: for GPT-2's 50,000 merges, several times faster than str.translate.
    """
    import numpy as np

    if not parts:
        return []
    units = np.frombuffer("\n".join(parts).encode("utf-16-le", "surrogatepass"), dtype="<u2")
    seps = np.flatnonzero(units == 10)
    if len(seps) != len(parts) - 1:
        return None
    mapped = _gpt2_byte_table()[units]
    mapped[seps] = 0
    if (mapped < 0).any():
        return None
    buf = mapped.astype(np.uint8).tobytes()
    starts = np.concatenate(([0], seps + 1)).tolist()
    ends = np.concatenate((seps, [len(units)])).tolist()
    return [buf[a:b] for a, b in zip(starts, ends)]


def _from_gpt2_chars() -> dict[int, int]:
    """str.translate table: GPT-2's character -> the Latin-1 character of its byte; every other
    code point up to the table's last one -> U+FFFF, so any character left >= 256 is not GPT-2's."""
    table = {c: 0xFFFF for c in range(max(map(ord, unicode_to_bytes())) + 1)}
    table.update({ord(c): b for c, b in unicode_to_bytes().items()})
    return table


def token_to_str(token: bytes) -> str:
    """Token bytes in GPT-2's spelling (b" the" -> "Ġthe")."""
    return token.decode("latin-1").translate(_to_gpt2_chars())


def str_to_token(text: str, where: str = "") -> bytes:
    """GPT-2's spelling back to bytes; TokenizerFileError for a character outside the table."""
    try:
        return text.translate(_from_gpt2_chars()).encode("latin-1")
    except UnicodeEncodeError:
        bad = next(c for c in text if c not in unicode_to_bytes())
        raise TokenizerFileError(f"{where}token {text!r} has a character outside GPT-2's byte mapping: {bad!r}") from None


def _read_text(path: str | os.PathLike, what: str) -> str:
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


def load_vocab(path: str | os.PathLike, special_tokens: Iterable[str] = ()) -> dict[int, bytes]:
    """Read vocab.json (token string -> id) into id -> token bytes.

    Ordinary tokens are spelled in GPT-2's byte-to-character table. An entry spelled exactly like
    one of `special_tokens` is that special token, written verbatim (its UTF-8 bytes), as Hugging
    Face `tokenizers`' trainer writes them: `{"<|endoftext|>": 0, "<|é|>": 1, "!": 2, ...}`.
    Raises TokenizerFileError naming the entry for anything else that cannot be read.
    """
    text = _read_text(path, "vocab")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenizerFileError(f"vocab file {path} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}") from None
    if not isinstance(raw, dict):
        raise TokenizerFileError(f"vocab file {path} must hold a JSON object of token -> id")
    return vocab_from_strings(raw, special_tokens, f"vocab file {path}")


def vocab_from_strings(
    entries: dict[str, int], special_tokens: Iterable[str], where: str, special_hint: str = "pass it in special_tokens"
) -> dict[int, bytes]:
    """Token strings -> ids (vocab.json, tokenizer.json's model.vocab) into id -> token bytes.

    Special tokens are matched verbatim; every other entry is decoded through GPT-2's byte table.
    `where` names the file in errors (TokenizerFileError); `special_hint` says how to declare a special token.
    """
    specials = set(special_tokens)
    fast = _vocab_in_bulk(entries, specials)
    if fast is not None:
        return fast
    table = _from_gpt2_chars()
    vocab: dict[int, bytes] = {}
    entry_of: dict[bytes, tuple[str, int]] = {}
    for tok, idx in entries.items():
        if type(idx) is not int or idx < 0:  # bool is not an id either
            raise TokenizerFileError(f"{where}: id for {tok!r} is not a non-negative integer: {idx!r}")
        if idx in vocab:
            raise TokenizerFileError(f"{where}: id {idx} is used twice")
        if tok in specials:
            token = tok.encode("utf-8")
        else:
            try:
                token = tok.translate(table).encode("latin-1")  # str_to_token, inlined: 150k calls for GPT-2
            except UnicodeEncodeError:
                _refuse_ordinary_entry(tok, idx, where, special_hint)
        if token in entry_of:
            other, other_idx = entry_of[token]
            raise TokenizerFileError(
                f"{where}: entries {other!r} (id {other_idx}) and {tok!r} (id {idx}) are both the bytes {token!r} "
                f"(one a special token written verbatim); tinylm gives each byte string one id, so these files cannot be loaded"
            )
        entry_of[token] = (tok, idx)
        vocab[idx] = token
    return vocab


def _vocab_in_bulk(entries: dict[str, int], specials: set[str]) -> dict[int, bytes] | None:
    """vocab_from_strings in a few C-level calls; None when anything needs the checking loop."""
    ids = list(entries.values())
    if not all(type(i) is int and i >= 0 for i in ids) or len(set(ids)) != len(ids):
        return None
    keys = list(entries)
    ordinary = [k for k in keys if k not in specials] if specials else keys
    if not ordinary:
        return None
    decoded = _decode_gpt2_parts(ordinary)
    if decoded is None:
        return None
    tokens = iter(decoded)
    vocab = {i: (k.encode("utf-8") if k in specials else next(tokens)) for k, i in zip(keys, ids)}
    return vocab if len(set(vocab.values())) == len(vocab) else None


def _refuse_ordinary_entry(tok: str, idx: int, where: str, special_hint: str) -> None:
    bad = next(c for c in tok if c not in unicode_to_bytes())
    raise TokenizerFileError(
        f"{where}: entry {tok!r} (id {idx}) is not spelled in GPT-2's byte mapping (character {bad!r}); "
        f"if it is a special token, {special_hint}"
    )


def merge_pairs(entries: list, where) -> list[tuple[bytes, bytes]]:
    """Merges spelled in GPT-2's table ("a b" strings or [a, b] pairs) to byte pairs.

    `where(n)` names merge n in errors (TokenizerFileError). All entries are translated in a few
    C-level calls; when anything is off, a per-entry pass finds the first bad one and names it.
    """
    if not entries:
        return []
    try:
        parts = _merge_parts(entries)
        decoded = _decode_gpt2_parts(parts)
        if decoded is None or not all(parts):
            raise ValueError
        tokens = iter(decoded)
        return list(zip(tokens, tokens))
    except (ValueError, TypeError, UnicodeEncodeError):
        pass
    table = _from_gpt2_chars()
    for number, entry in enumerate(entries, 1):
        try:
            a, b = entry.split(" ") if isinstance(entry, str) else entry
            if not a or not b:
                raise ValueError
            a.translate(table).encode("latin-1"), b.translate(table).encode("latin-1")
        except (ValueError, TypeError, AttributeError, UnicodeEncodeError):
            _refuse_merge(entry, number, where)
    raise AssertionError("merges refused by the fast path only")  # pragma: no cover


def _merge_parts(entries: list) -> list[str]:
    """[a1, b1, a2, b2, ...] from "a b" strings or [a, b] pairs; ValueError/TypeError when irregular."""
    if all(isinstance(e, str) for e in entries):
        if list(map(str.count, entries, repeat(" "))).count(1) != len(entries):
            raise ValueError
        return " ".join(entries).split(" ")
    if not all(isinstance(e, list) for e in entries) or list(map(len, entries)).count(2) != len(entries):
        raise ValueError
    return list(chain.from_iterable(entries))


def _refuse_merge(entry: object, number: int, where) -> None:
    pair = entry.split(" ") if isinstance(entry, str) else entry
    if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
        raise TokenizerFileError(f"{where(number)}: expected two tokens (\"a b\" or [\"a\", \"b\"]), got {entry!r}")
    for part in pair:
        str_to_token(part, f"{where(number)}: ")
    raise AssertionError(f"merge {entry!r} refused by the fast path only")  # pragma: no cover


def check_special_spellings(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: Iterable[str], where: str) -> None:
    """Refuse files where one entry is both a special token and an ordinary token the BPE needs.

    `tokenizers` gives the special token "é" and the byte 0xE9 (spelled "é" in GPT-2's table) the
    same vocab.json entry and so the same id; an id of tinylm's has one meaning (one byte string),
    so such files cannot be represented. Raises TokenizerFileError naming the entry.
    """
    specials = list(special_tokens)
    wanted = {t.encode("utf-8") for t in specials}
    if not wanted or wanted.isdisjoint(vocab.values()):
        return  # no special token is spelled in the vocabulary: nothing to check (the common case)
    id_of = {tok: idx for idx, tok in vocab.items() if tok in wanted}
    tokens: set[bytes] | None = None  # all of the vocabulary's, made only when needed
    for special in specials:
        idx = id_of.get(special.encode("utf-8"))
        if idx is None:
            continue
        try:
            ordinary = str_to_token(special)
        except TokenizerFileError:
            continue
        if ordinary == special.encode("utf-8"):
            continue
        tokens = set(vocab.values()) if tokens is None else tokens
        if ordinary in tokens:
            continue
        if len(ordinary) == 1:
            need = f"byte {ordinary[0]} is spelled {special!r} in GPT-2's table"
        else:
            rank = next((r for r, (a, b) in enumerate(merges) if a + b == ordinary), None)
            if rank is None:
                continue
            need = f"merge {rank + 1} makes the ordinary token {ordinary!r}, spelled the same"
        raise TokenizerFileError(
            f"{where}: entry {special!r} (id {idx}) is both the special token {special!r} and an ordinary token ({need}); "
            f"tinylm gives each id one meaning, so these files cannot be loaded"
        )


def load_vocab_and_merges(
    vocab_path: str | os.PathLike, merges_path: str | os.PathLike, special_tokens: Iterable[str] | None = None
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """vocab.json + merges.txt as written by tinylm, GPT-2 or Hugging Face `tokenizers`.

    Special tokens found verbatim in vocab.json keep their ids there (wherever in the id range);
    ones not in it are added after the vocabulary by Tokenizer. TokenizerFileError names the
    entry that cannot be represented.
    """
    specials = list(special_tokens or [])
    vocab = load_vocab(vocab_path, specials)
    merges = load_merges(merges_path)
    check_special_spellings(vocab, merges, specials, f"vocab file {vocab_path}")
    return vocab, merges


def load_merges(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """Read merges.txt; a '#version' first line (as GPT-2's and `tokenizers`' files have) is skipped."""
    text = _read_text(path, "merges")
    lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")
    first = 1 if lines[0].startswith("#version") else 0

    def where(k: int) -> str:  # merge k (1-based, blank lines skipped) -> its line in the file, for errors
        numbered = [n for n, line in enumerate(lines[first:], first + 1) if line.rstrip("\r")]
        return f"merges file {path}, line {numbered[k - 1]}"

    return merge_pairs([line.rstrip("\r") for line in lines[first:] if line], where)


def vocab_strings(vocab: dict[int, bytes], special_tokens: Iterable[str] = ()) -> dict[str, int]:
    """id -> bytes as the token string -> id map of vocab.json and tokenizer.json.

    Ordinary tokens are spelled in GPT-2's byte table; special tokens verbatim, as Hugging Face
    `tokenizers` writes and reads them. TokenizerFileError when a special token is spelled like
    an ordinary token (one JSON key cannot hold both).
    """
    specials = {t.encode("utf-8"): t for t in special_tokens}
    out: dict[str, int] = {}
    for idx, tok in sorted(vocab.items()):
        name = specials.get(tok)
        key = name if name is not None else token_to_str(tok)
        if key in out:
            special_id, ordinary_id = (idx, out[key]) if name is not None else (out[key], idx)
            raise TokenizerFileError(
                f"special token {key!r} (id {special_id}) is spelled like the ordinary token {vocab[ordinary_id]!r} "
                f"(id {ordinary_id}) in GPT-2's byte table; one vocabulary file cannot hold both: choose another special token"
            )
        out[key] = idx
    return out


def vocab_json_bytes(vocab: dict[int, bytes], special_tokens: Iterable[str] = ()) -> bytes:
    return json.dumps(vocab_strings(vocab, special_tokens), ensure_ascii=False, indent=0).encode("utf-8")


def merges_txt_bytes(merges: list[tuple[bytes, bytes]]) -> bytes:
    lines = ["#version: 0.2"] + [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges]
    return ("\n".join(lines) + "\n").encode("utf-8")


def special_tokens_json_bytes(special_tokens: list[str]) -> bytes:
    return json.dumps({"special_tokens": list(special_tokens)}, ensure_ascii=False).encode("utf-8")


def tokenizer_folder_files(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str]) -> dict[str, bytes]:
    """File name -> contents of a tokenizer folder: tinylm's three files, tokenizer.json and tokenizer.tiktoken."""
    from tinylm.tokenizer.hf_json import TOKENIZER_JSON_FILE, tokenizer_json_bytes
    from tinylm.tokenizer.tiktoken_file import TIKTOKEN_FILE, tiktoken_bytes

    return {  # in rename order: tinylm's own files last, so a complete special_tokens.json means all are complete
        TOKENIZER_JSON_FILE: tokenizer_json_bytes(vocab, merges, special_tokens),
        TIKTOKEN_FILE: tiktoken_bytes(vocab, special_tokens),
        VOCAB_FILE: vocab_json_bytes(vocab, special_tokens),
        MERGES_FILE: merges_txt_bytes(merges),
        SPECIAL_TOKENS_FILE: special_tokens_json_bytes(special_tokens),
    }


def save_vocab(vocab: dict[int, bytes], path: str | os.PathLike, special_tokens: Iterable[str] = ()) -> None:
    atomic_write_bytes(path, vocab_json_bytes(vocab, special_tokens))


def save_merges(merges: list[tuple[bytes, bytes]], path: str | os.PathLike) -> None:
    atomic_write_bytes(path, merges_txt_bytes(merges))


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
