"""Sampling text from a trained model: temperature, nucleus (top-p), stop at <|endoftext|>, streaming.

The prompt is untrusted text: by default a special token written in it is refused
(SpecialTokenNotAllowedError), so a user cannot forge a document boundary. Generation stops when
the model itself produces <|endoftext|>. Text is streamed through an incremental UTF-8 decoder, so
a character whose bytes span two tokens is printed once, whole.

Decoding keeps a KV cache (tinylm.model.kv_cache): the prompt is processed once, then one position
per new token; `use_cache=False` recomputes the window every step and gives the same tokens.
Several prompts decode as one batch (`generate_batch`). Sampling takes every finite temperature
>= 0 (softmax in float64 after subtracting the max) and never returns an id the tokenizer lacks
(`allowed_ids`: a model's vocabulary may be padded beyond its tokenizer's).
"""

from __future__ import annotations

import codecs
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator

import torch

from tinylm.errors import ConfigError, TinylmError
from tinylm.model.kv_cache import KVCache

END_OF_TEXT = "<|endoftext|>"


def check_sampling(temperature: float, top_p: float) -> None:
    """Raise ConfigError unless temperature is a finite real number >= 0 and top_p is in (0, 1].

    Every setting that passes produces tokens: a tiny positive temperature (even a denormal such
    as 5e-324) is the greedy limit, a huge one (1e300) the uniform limit.
    """
    if not 0 <= _as_float(temperature) < math.inf:
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if not 0 < _as_float(top_p) <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")


def _as_float(value) -> float:
    """A real number as a float; NaN for anything else (bools, strings, ints beyond float's range)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p; renormalise.

    probs: (..., V), each row summing to 1. A token is kept when the mass of the tokens ranked
    above it is below top_p, so the most likely token always survives and ties at the boundary
    are cut by rank.
    """
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def allowed_mask(allowed_ids: Iterable[int] | None, vocab_size: int) -> torch.Tensor | None:
    """A bool mask (vocab_size,) of the ids that may be sampled, or None when every id may.

    A model's vocabulary can be larger than its tokenizer's (an embedding padded to a multiple of
    64, as nanoGPT and llm.c do): the ids the tokenizer lacks must never be sampled. Ids at or
    beyond vocab_size are ignored; ConfigError when no id is left.
    """
    if allowed_ids is None:
        return None
    ids = torch.tensor(sorted({i for i in allowed_ids if 0 <= i < vocab_size}), dtype=torch.long)
    if not ids.numel():
        raise ConfigError(f"none of the tokenizer's ids is below the model's vocabulary size {vocab_size}")
    if ids.numel() == vocab_size:
        return None
    return torch.zeros(vocab_size, dtype=torch.bool).index_fill_(0, ids, True)


def _log_weights(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log of unnormalised probabilities (..., V) float64, the largest 0: (logits - max) / temperature.

    Subtracting the max first means no overflow at any temperature: each entry is in [-inf, 0],
    so exp gives at least one 1 per row. Logits of +inf share all the mass (the limit of softmax).
    """
    z = logits.double()
    top = z.amax(dim=-1, keepdim=True)
    shifted = torch.where(top == math.inf, torch.where(z == math.inf, 0.0, -math.inf), z - top)
    return shifted / temperature


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token id per row: logits (..., V) -> ids (...) int64; temperature 0 means greedy (argmax).

    allowed: a bool mask (V,) (see `allowed_mask`); other ids get probability 0. Softmax runs in
    float64 after subtracting the row's max, so every finite temperature > 0 works (a tiny one is
    the greedy limit). Raises ConfigError on bad settings and TinylmError when a row's logits are
    NaN or all -inf (a broken model: there is no distribution to sample).
    """
    check_sampling(temperature, top_p)
    temperature, top_p = float(temperature), float(top_p)
    logits = logits.double()
    if allowed is not None:
        logits = logits.masked_fill(~allowed.to(logits.device), -math.inf)
    if torch.isnan(logits).any() or (logits == -math.inf).all(dim=-1).any():
        raise TinylmError("the model's next-token logits are NaN or all -inf: nothing can be sampled (a diverged checkpoint?)")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.exp(_log_weights(logits, temperature))
    probs = top_p_filter(probs / probs.sum(dim=-1, keepdim=True), top_p)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    allowed: torch.Tensor | None = None,
) -> int:
    """One token id from last-position logits (V,); temperature 0 means greedy (argmax). See `sample`."""
    return int(sample(logits, temperature, top_p, generator, allowed))


def _decode_steps(
    model: torch.nn.Module, prompts: torch.Tensor, use_cache: bool
) -> Iterator[torch.Tensor]:
    """Logits (B, V) for the next position of each sequence; `send` the chosen ids (B,) back.

    prompts: (B, T) int64 on the model's device. The model sees at most its last context_length
    ids, at positions 0.. of that window (what a model without a cache is shown). With the cache,
    the prompt is processed once and each new token is one position; when the cache is full, it
    is re-filled from the last window, so positions restart with the window exactly as without it.
    """
    context_length = model.config.context_length
    cache = KVCache.for_model(model.config) if use_cache and getattr(model, "supports_kv_cache", False) else None
    ids, new = prompts, prompts  # new: positions the cache has not seen yet
    while True:
        if cache is None:
            logits = model(ids[:, -context_length:])[:, -1]
        else:
            if cache.length + new.shape[1] > context_length:
                cache.reset()
                new = ids[:, -context_length:]
            logits = model(new, kv_cache=cache)[:, -1]
        next_ids = yield logits
        new = next_ids.to(ids.device).reshape(-1, 1)
        ids = torch.cat([ids[:, -context_length:], new], dim=1)


def _generate_rows(
    model: torch.nn.Module,
    prompts: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    stop_id: int | None,
    allowed_ids: Iterable[int] | None,
    use_cache: bool,
) -> Iterator[torch.Tensor]:
    """New ids (B,) per step for a batch of equal-length prompts (B, T), until every row has
    produced stop_id or max_new_tokens steps have run. A row's ids after its stop_id are filler."""
    was_training = model.training
    model.eval()
    allowed = None
    finished = torch.zeros(prompts.shape[0], dtype=torch.bool)
    try:
        with torch.no_grad():
            steps = _decode_steps(model, prompts, use_cache)
            logits = next(steps) if max_new_tokens > 0 else None
            for step in range(max_new_tokens):
                logits = logits.cpu()
                if allowed is None and allowed_ids is not None:
                    allowed = allowed_mask(allowed_ids, logits.shape[-1])
                    allowed_ids = None
                next_ids = sample(logits, temperature, top_p, generator, allowed)
                yield next_ids
                if stop_id is not None:
                    finished |= next_ids == stop_id
                if bool(finished.all()) or step == max_new_tokens - 1:
                    return
                logits = steps.send(next_ids)
    finally:
        model.train(was_training)


def _check_request(model: torch.nn.Module, prompts: list[list[int]], temperature: float, top_p: float) -> None:
    check_sampling(temperature, top_p)
    if not prompts:
        raise ConfigError("no prompts given")
    vocab_size = getattr(model.config, "vocab_size", None)
    for prompt in prompts:
        if not prompt:
            raise ConfigError("the prompt is empty: give at least one token of text")
        if vocab_size is not None and not all(0 <= i < vocab_size for i in prompt):
            bad = next(i for i in prompt if not 0 <= i < vocab_size)
            raise ConfigError(f"prompt token id {bad} is outside the model's vocabulary of {vocab_size}")


def generate_ids(
    model: torch.nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_id: int | None = None,
    *,
    allowed_ids: Iterable[int] | None = None,
    use_cache: bool = True,
) -> Iterator[int]:
    """Yield new token ids one at a time, stopping before stop_id.

    The model sees at most its last context_length ids (positions restart with that window).
    allowed_ids: the ids that may be sampled (a tokenizer's ids; default all the model's).
    use_cache: keep keys and values (KVCache) so each new token is one position; False recomputes
    the whole window every step (same tokens: a check). Settings are checked here, at the call,
    not when the first id is asked for (ConfigError).
    """
    _check_request(model, [prompt_ids], temperature, top_p)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    device = next(model.parameters()).device
    prompts = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    rows = _generate_rows(model, prompts, max_new_tokens, temperature, top_p, generator, stop_id, allowed_ids, use_cache)
    return (int(ids[0]) for ids in rows if int(ids[0]) != stop_id)


def generate_batch(
    model: torch.nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_id: int | None = None,
    *,
    allowed_ids: Iterable[int] | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """The new ids for each prompt (without stop_id and what follows), prompts decoded together.

    Prompts of the same length form one batch (no padding, so each row gets exactly the numbers
    it would get alone, up to float reordering); different lengths are decoded group by group,
    from one seeded generator. Other arguments as in `generate_ids`.
    """
    prompts = [list(p) for p in prompts]
    _check_request(model, prompts, temperature, top_p)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    device = next(model.parameters()).device
    outputs: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(index)
    for indices in by_length.values():
        batch = torch.tensor([prompts[i] for i in indices], dtype=torch.long, device=device)
        stopped = [False] * len(indices)
        for step_ids in _generate_rows(model, batch, max_new_tokens, temperature, top_p, generator, stop_id, allowed_ids, use_cache):
            for row, token_id in enumerate(step_ids.tolist()):
                stopped[row] = stopped[row] or token_id == stop_id
                if not stopped[row]:
                    outputs[indices[row]].append(token_id)
    return outputs


def _prompt_ids(tokenizer, prompt: str, allow_special: bool) -> list[int]:
    if allow_special:
        return tokenizer.encode(prompt)
    return tokenizer.encode(prompt, allowed_special=set(), disallowed_special="all")


def stream(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    allow_special: bool = False,
    use_cache: bool = True,
) -> Iterator[str]:
    """Yield the continuation of `prompt` as text pieces, as soon as each piece is whole UTF-8.

    Only ids the tokenizer has are sampled (a model with a padded vocabulary never produces the
    padding). Settings and the prompt are checked at the call (ConfigError, SpecialTokenNotAllowedError).
    """
    prompt_ids = _prompt_ids(tokenizer, prompt, allow_special)
    stop_id = tokenizer.special_to_id.get(END_OF_TEXT)
    ids = generate_ids(model, prompt_ids, max_new_tokens, temperature, top_p, seed, stop_id,
                       allowed_ids=tokenizer.vocab.keys(), use_cache=use_cache)
    return _utf8_pieces(tokenizer, ids)


def _utf8_pieces(tokenizer, ids: Iterator[int]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token_id in ids:
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
    use_cache: bool = True,
) -> str:
    """The continuation of `prompt` (without the prompt), passing each piece to `callback` as it comes."""
    pieces = []
    for piece in stream(model, tokenizer, prompt, max_new_tokens, temperature, top_p, seed, allow_special, use_cache):
        pieces.append(piece)
        if callback is not None:
            callback(piece)
    return "".join(pieces)


def generate_samples(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    num_samples: int,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    allow_special: bool = False,
    use_cache: bool = True,
) -> list[str]:
    """`num_samples` continuations of one prompt, decoded as one batch (B = num_samples)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
    prompt_ids = _prompt_ids(tokenizer, prompt, allow_special)
    stop_id = tokenizer.special_to_id.get(END_OF_TEXT)
    rows = generate_batch(model, [prompt_ids] * num_samples, max_new_tokens, temperature, top_p, seed, stop_id,
                          allowed_ids=tokenizer.vocab.keys(), use_cache=use_cache)
    return [tokenizer.decode(row) for row in rows]


def load_run(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a run folder (or a checkpoint file inside one): see
    `tinylm.training.run_dir.load_run`, which owns the run folder's layout."""
    from tinylm.training.run_dir import load_run as load

    model, tokenizer, _ = load(path, device)
    return model, tokenizer
