"""tiktoken's rank file (`.tiktoken`): one `base64(token bytes) rank` line per ordinary token.

This is the format of tiktoken's own `gpt2` / `cl100k_base` files and of
`tiktoken.load.load_tiktoken_bpe`. It holds neither the pre-tokenizer pattern nor the special
tokens, so a reader names the pattern and passes the special tokens with their ids. tiktoken
merges by rank (the adjacent pair whose concatenation has the lowest rank goes first); tinylm
merges by a merge list, recovered here as Hugging Face's tiktoken converter does: every split
of a token into two tokens of the file is a merge, ordered by the token's rank.
"""

from __future__ import annotations

import base64
import binascii
import os

from tinylm.errors import ConfigError, TokenizerFileError
from tinylm.tokenizer.files import _read_text
from tinylm.tokenizer.pretokenize import GPT2_PATTERN

TIKTOKEN_FILE = "tokenizer.tiktoken"

# tiktoken's encodings whose pattern is GPT-2's: the only pattern tinylm's encoders implement.
NAMED_PATTERNS = {"gpt2": GPT2_PATTERN, "r50k_base": GPT2_PATTERN, "p50k_base": GPT2_PATTERN, "p50k_edit": GPT2_PATTERN}


def tiktoken_bytes(vocab: dict[int, bytes], special_tokens: list[str]) -> bytes:
    """The rank file of a vocabulary (id -> bytes): ordinary tokens, rank = id, in id order.

    Special tokens are left out (tiktoken takes them as `special_tokens={text: id}`).
    """
    specials = {t.encode("utf-8") for t in special_tokens}
    lines = [f"{base64.b64encode(tok).decode('ascii')} {idx}\n" for idx, tok in sorted(vocab.items()) if tok not in specials]
    return "".join(lines).encode("ascii")


def load_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a .tiktoken file into token bytes -> rank; TokenizerFileError names a bad line."""
    text = _read_text(path, "tiktoken")
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        parts = line.split()
        where = f"tiktoken file {path}, line {lineno}"
        if len(parts) != 2:
            raise TokenizerFileError(f"{where}: expected `base64-token rank`, got {line[:80]!r}")
        try:
            token = base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError):
            raise TokenizerFileError(f"{where}: {parts[0][:80]!r} is not base64") from None
        if not parts[1].isdigit():
            raise TokenizerFileError(f"{where}: rank {parts[1][:80]!r} is not a non-negative integer")
        rank = int(parts[1])
        if not token:
            raise TokenizerFileError(f"{where}: the token is empty")
        if token in ranks or rank in seen_ranks:
            raise TokenizerFileError(f"{where}: token {token!r} or rank {rank} appears twice")
        ranks[token] = rank
        seen_ranks.add(rank)
    return ranks


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split of a token into two ranked tokens, in order of the token's rank, then its parts'.

    With these merges, merging the lowest-ranked merge first gives tiktoken's ids (the recovery
    used by Hugging Face's tiktoken converter; checked against tiktoken in the tests).
    """
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return [(left, right) for _, _, _, left, right in merges]


def pattern_by_name(pattern: str) -> str:
    """A named pre-tokenizer pattern (or the pattern itself); ConfigError for ones tinylm cannot run."""
    if pattern in NAMED_PATTERNS:
        return NAMED_PATTERNS[pattern]
    if pattern == GPT2_PATTERN:
        return pattern
    raise ConfigError(
        f"pattern {pattern[:80]!r} is unsupported: tinylm's encoders implement GPT-2's pre-tokenizer pattern "
        f"(names: {', '.join(NAMED_PATTERNS)})"
    )


def tiktoken_vocab(
    ranks: dict[bytes, int], special_tokens: dict[str, int] | list[str] | None, where: str
) -> tuple[dict[int, bytes], list[str]]:
    """id -> bytes from ranks plus special tokens at their ids (a list: after the last rank, in order)."""
    vocab = {rank: token for token, rank in ranks.items()}
    if special_tokens is None:
        return vocab, []
    if not isinstance(special_tokens, dict):
        start = max(vocab, default=-1) + 1
        special_tokens = {t: start + i for i, t in enumerate(special_tokens)}
    for text, idx in special_tokens.items():
        if not isinstance(text, str) or not text:
            raise ConfigError(f"special tokens must be non-empty strings, got {text!r}")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise ConfigError(f"special token {text!r}: id must be a non-negative integer, got {idx!r}")
        if idx in vocab:
            raise ConfigError(f"special token {text!r} has id {idx}, which {where} gives to {vocab[idx]!r}")
        vocab[idx] = text.encode("utf-8")
    return vocab, list(special_tokens)
