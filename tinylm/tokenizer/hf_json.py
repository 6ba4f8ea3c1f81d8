"""Hugging Face `tokenizer.json`: written for byte-level BPE, read back from tinylm, GPT-2 or `tokenizers`.

The file format is the one `tokenizers.Tokenizer.save` writes (format "1.0"): a `BPE` model with
`vocab` (token string -> id, ordinary tokens spelled in GPT-2's byte table, special tokens
verbatim) and `merges`, the `ByteLevel` pre-tokenizer (whose regex is GPT-2's pattern), and the
special tokens as `added_tokens`. Only what tinylm's encoder computes identically is accepted;
anything else (other models, normalizers that change the text, prefix spaces, post-processors
that add tokens...) is one TokenizerFileError naming it.
"""

from __future__ import annotations

import json
import os

from tinylm.errors import TokenizerFileError
from tinylm.tokenizer.files import _read_text, check_special_spellings, merge_pairs, token_to_str, vocab_from_strings, vocab_strings

TOKENIZER_JSON_FILE = "tokenizer.json"

# GPT-2's pre-tokenizer pattern as spelled by tiktoken/tinylm and by `tokenizers` (same matches).
GPT2_PATTERN_SPELLINGS = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
)

_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def tokenizer_json_bytes(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str]) -> bytes:
    """tokenizer.json for a byte-level BPE vocabulary (id -> bytes), its merges and special tokens.

    Special tokens keep their ids: they are model vocab entries (verbatim) and added tokens, as
    `tokenizers`' own trainer writes them. TokenizerFileError when a special token is spelled
    like an ordinary token.
    """
    strings = vocab_strings(vocab, special_tokens)
    added = sorted((strings[t], t) for t in special_tokens)
    obj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": idx, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for idx, t in added
        ],
        "normalizer": None,
        "pre_tokenizer": dict(_BYTE_LEVEL),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": strings,
            # "a b" strings: GPT-2's spelling has no space, and every `tokenizers` version reads them
            "merges": [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges],
        },
    }
    return json.dumps(obj, ensure_ascii=False, indent=2).encode("utf-8")


def load_tokenizer_json(path: str | os.PathLike) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """Read a byte-level BPE tokenizer.json into (id -> bytes, merges, special tokens).

    Every added token (special or not) becomes a tinylm special token: `tokenizers` matches both
    kinds in the text before pre-tokenizing, as tinylm matches its special tokens. Raises
    TokenizerFileError naming any content that tinylm cannot reproduce exactly.
    """
    where = f"tokenizer file {path}"
    try:
        obj = json.loads(_read_text(path, "tokenizer"))
    except json.JSONDecodeError as exc:
        raise TokenizerFileError(f"{where} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise TokenizerFileError(f"{where} is not a Hugging Face tokenizer.json (no \"model\" object)")
    model = obj["model"]
    _check_model(model, where)
    _check_normalizer(obj.get("normalizer"), where)
    _check_pre_tokenizer(obj.get("pre_tokenizer"), where)
    _check_post_processor(obj.get("post_processor"), where)
    _check_decoder(obj.get("decoder"), where)
    added = _added_tokens(obj.get("added_tokens") or [], where)
    specials = [content for _, content in added]
    raw_vocab = model.get("vocab")
    if not isinstance(raw_vocab, dict):
        raise TokenizerFileError(f"{where}: model.vocab must be an object of token -> id")
    vocab = vocab_from_strings(raw_vocab, specials, where, special_hint="list it in added_tokens")
    merges = _merges(model.get("merges"), where)
    for idx, content in added:
        if content in raw_vocab:  # `tokenizers` gives an added token already in the model that model's id
            continue
        if idx in vocab:
            raise TokenizerFileError(f"{where}: added token {content!r} has id {idx}, which model.vocab gives to {vocab[idx]!r}")
        vocab[idx] = content.encode("utf-8")
    check_special_spellings(vocab, merges, specials, where)
    return vocab, merges, specials


def _type_of(part: object) -> str | None:
    return part.get("type") if isinstance(part, dict) else None


def _unsupported(where: str, what: str, why: str) -> TokenizerFileError:
    return TokenizerFileError(f"{where}: {what} is unsupported ({why})")


def _check_model(model: dict, where: str) -> None:
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise _unsupported(where, f"model type {kind!r}", "tinylm reads byte-level BPE models only")
    changes_ids = {
        "dropout": lambda v: v in (None, 0, 0.0),
        "continuing_subword_prefix": lambda v: v in (None, ""),
        "end_of_word_suffix": lambda v: v in (None, ""),
        "ignore_merges": lambda v: not v,
    }
    for key, fine in changes_ids.items():
        if not fine(model.get(key)):
            raise _unsupported(where, f"model.{key}={model[key]!r}", "it changes ids; tinylm applies the merges as GPT-2 does")


def _check_normalizer(normalizer: object, where: str) -> None:
    if normalizer is None or (_type_of(normalizer) == "Sequence" and not normalizer.get("normalizers")):
        return
    raise _unsupported(where, f"normalizer {_type_of(normalizer)!r}", "it changes the text before encoding; tinylm encodes the text as given")


def _is_byte_level(part: object, use_regex: bool) -> bool:
    return (
        _type_of(part) == "ByteLevel"
        and not part.get("add_prefix_space", False)
        and bool(part.get("use_regex", True)) == use_regex
    )


def _is_gpt2_split(part: object) -> bool:
    pattern = part.get("pattern") if isinstance(part, dict) else None
    return (
        _type_of(part) == "Split"
        and isinstance(pattern, dict)
        and pattern.get("Regex") in GPT2_PATTERN_SPELLINGS
        and part.get("behavior") == "Isolated"
        and not part.get("invert", False)
    )


def _check_pre_tokenizer(pre: object, where: str) -> None:
    """ByteLevel with GPT-2's regex, or Split(GPT-2's regex) followed by ByteLevel without one."""
    if _is_byte_level(pre, use_regex=True):
        return
    parts = pre.get("pretokenizers") if _type_of(pre) == "Sequence" else None
    if isinstance(parts, list) and len(parts) == 2 and _is_gpt2_split(parts[0]) and _is_byte_level(parts[1], use_regex=False):
        return
    if _type_of(pre) == "ByteLevel" and pre.get("add_prefix_space"):
        raise _unsupported(where, "pre_tokenizer ByteLevel with add_prefix_space=true", "it adds a space before the text")
    raise _unsupported(
        where, f"pre_tokenizer {_type_of(pre)!r}", "tinylm pre-tokenizes with GPT-2's pattern and byte-level BPE only"
    )


def _check_post_processor(post: object, where: str) -> None:
    if post is None or _type_of(post) == "ByteLevel":  # ByteLevel only trims offsets: ids unchanged
        return
    raise _unsupported(where, f"post_processor {_type_of(post)!r}", "it adds tokens around the text that tinylm's encode does not")


def _check_decoder(decoder: object, where: str) -> None:
    if decoder is None or _type_of(decoder) == "ByteLevel":
        return
    raise _unsupported(where, f"decoder {_type_of(decoder)!r}", "tinylm decodes byte-level tokens only")


def _added_tokens(entries: object, where: str) -> list[tuple[int, str]]:
    if not isinstance(entries, list):
        raise TokenizerFileError(f"{where}: added_tokens must be a list")
    out = []
    for entry in entries:
        content = entry.get("content") if isinstance(entry, dict) else None
        idx = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(content, str) or not content or not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise TokenizerFileError(f"{where}: added token {entry!r} needs a non-empty \"content\" string and a non-negative \"id\"")
        for flag in ("single_word", "lstrip", "rstrip"):
            if entry.get(flag):
                raise _unsupported(where, f"added token {content!r} with {flag}=true", "tinylm matches special tokens exactly as written")
        out.append((idx, content))
    _check_match_passes(entries, where)
    return out


def _may_overlap(a: str, b: str) -> bool:
    """Whether occurrences of a and b can overlap in some text."""
    if a in b or b in a:
        return True
    return any(a.endswith(b[:k]) for k in range(1, len(b))) or any(b.endswith(a[:k]) for k in range(1, len(a)))


def _check_match_passes(entries: list[dict], where: str) -> None:
    """`tokenizers` matches added tokens with normalized=false in the text first, then the others:
    where a token of one kind can overlap one of the other, that differs from tinylm's one pass
    (leftmost, longest first), so it is refused. Without a normalizer the flag changes nothing else."""
    plain = [e["content"] for e in entries if not e.get("normalized", not e.get("special", False))]
    normalized = [e["content"] for e in entries if e.get("normalized", not e.get("special", False))]
    for a in plain:
        for b in normalized:
            if _may_overlap(a, b):
                raise _unsupported(
                    where,
                    f"added tokens {a!r} (normalized=false) and {b!r} (normalized=true) together",
                    "tokenizers matches them in two passes, which can split text differently from tinylm's one pass where they overlap",
                )


def _merges(entries: object, where: str) -> list[tuple[bytes, bytes]]:
    """model.merges: "a b" strings (all versions) or [a, b] pairs (`tokenizers` >= 0.20)."""
    if not isinstance(entries, list):
        raise TokenizerFileError(f"{where}: model.merges must be a list")
    return merge_pairs(entries, lambda number: f"{where}, merge {number}")
