"""Sampling text from a trained model: temperature, nucleus (top-p), stop at <|endoftext|>, streaming.

The prompt is untrusted text: by default a special token written in it is refused
(SpecialTokenNotAllowedError), so a user cannot forge a document boundary. Generation stops when
the model itself produces <|endoftext|>. Text is streamed through an incremental UTF-8 decoder, so
a character whose bytes span two tokens is printed once, whole.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from tinylm.errors import ConfigError, InputFileError

END_OF_TEXT = "<|endoftext|>"


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p; renormalise.

    A token is kept when the mass of the tokens ranked above it is below top_p, so the most likely
    token always survives and ties at the boundary are cut by rank.
    """
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    """One token id from last-position logits (V,); temperature 0 means greedy (argmax)."""
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    probs = top_p_filter(probs, top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def generate_ids(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_id: int | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time; the context is cut to the model's last context_length ids."""
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
    if not prompt_ids:
        raise ConfigError("the prompt is empty: give at least one token of text")
    device = next(model.parameters()).device
    context_length = model.config.context_length
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = list(prompt_ids)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for _ in range(max_new_tokens):
                window = torch.tensor([ids[-context_length:]], dtype=torch.long, device=device)
                logits = model(window)[0, -1].cpu()
                next_id = sample_next(logits, temperature, top_p, generator)
                if next_id == stop_id:
                    return
                ids.append(next_id)
                yield next_id
    finally:
        model.train(was_training)


def stream(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    allow_special: bool = False,
) -> Iterator[str]:
    """Yield the continuation of `prompt` as text pieces, as soon as each piece is whole UTF-8."""
    if allow_special:
        prompt_ids = tokenizer.encode(prompt)
    else:
        prompt_ids = tokenizer.encode(prompt, allowed_special=set(), disallowed_special="all")
    stop_id = tokenizer.special_to_id.get(END_OF_TEXT)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token_id in generate_ids(model, prompt_ids, max_new_tokens, temperature, top_p, seed, stop_id):
        piece = decoder.decode(tokenizer.decode_bytes([token_id]))
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    allow_special: bool = False,
    callback: Callable[[str], None] | None = None,
) -> str:
    """The continuation of `prompt` (without the prompt), passing each piece to `callback` as it comes."""
    pieces = []
    for piece in stream(model, tokenizer, prompt, max_new_tokens, temperature, top_p, seed, allow_special):
        pieces.append(piece)
        if callback is not None:
            callback(piece)
    return "".join(pieces)


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a run folder (or a checkpoint file inside one).

    `tinylm train` saves the tokenizer into the run folder (vocab.json, merges.txt,
    special_tokens.json); without those files, the tokenizer the run's config names is used.
    """
    from tinylm.tokenizer.bpe import Tokenizer
    from tinylm.tokenizer.files import VOCAB_FILE
    from tinylm.training.checkpoint import load_model
    from tinylm.training.config import TokenizerConfig

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    model, payload = load_model(p, device)
    if (folder / VOCAB_FILE).exists():
        tokenizer = Tokenizer.from_dir(folder)
    else:
        tokenizer = TokenizerConfig(**(payload.get("train_config") or {}).get("tokenizer", {})).load()
    if tokenizer is None:
        raise InputFileError(f"no tokenizer for {path}: expected vocab.json and merges.txt in {folder}")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ConfigError(f"the tokenizer in {folder} has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}")
    return model, tokenizer
