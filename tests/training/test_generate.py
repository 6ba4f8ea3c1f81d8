"""Sampling: greedy determinism, nucleus filtering, stopping, safe prompts, streaming UTF-8; sampling at
its limits (any finite temperature, padded vocabularies); the KV cache and batches in generation."""

import math
import types

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinylm import ModelConfig, Tokenizer, TransformerLM
from tinylm.errors import ConfigError, SpecialTokenNotAllowedError, TinylmError
from tinylm.generate import (
    generate,
    generate_batch,
    generate_ids,
    generate_samples,
    sample,
    sample_next,
    stream,
    top_p_filter,
)

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])  # bytes are ids; EOT = 256


class Scripted(torch.nn.Module):
    """Greedy output is `script[i]` for the i-th generated token, whatever the input."""

    def __init__(self, script, prompt_len, vocab=257, context_length=64):
        super().__init__()
        self.script, self.prompt_len, self.vocab = script, prompt_len, vocab
        self.config = types.SimpleNamespace(context_length=context_length)
        self.seen = []
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        self.seen.append(ids.shape[-1])
        i = min(len(self.seen) - 1, len(self.script) - 1)
        logits = torch.full((1, ids.shape[-1], self.vocab), -10.0)
        logits[0, -1, self.script[i]] = 10.0
        return logits


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    torch.testing.assert_close(top_p_filter(probs, 0.8), torch.tensor([0, 0.5, 0, 0.3]) / 0.8)
    torch.testing.assert_close(top_p_filter(probs, 0.81), torch.tensor([0, 0.5, 0.15, 0.3]) / 0.95)
    torch.testing.assert_close(top_p_filter(probs, 0.1), torch.tensor([0, 1.0, 0, 0]))
    torch.testing.assert_close(top_p_filter(probs, 1.0), probs)


def test_top_p_matches_a_brute_force_reference():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        probs = torch.softmax(torch.randn(30, generator=gen) * 2, dim=-1)
        p = float(torch.rand(1, generator=gen))
        order = sorted(range(30), key=lambda i: -probs[i].item())
        kept, mass = [], 0.0
        for i in order:
            kept.append(i)
            mass += probs[i].item()
            if mass >= p:
                break
        out = top_p_filter(probs, p)
        assert set(torch.nonzero(out).flatten().tolist()) == set(kept)
        assert out.sum().item() == pytest.approx(1.0)


def test_sampling_never_leaves_the_nucleus(tokenizer):
    model = Scripted([65], prompt_len=1)
    model.forward = lambda ids: torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05] + [1e-9] * 253)).expand(1, ids.shape[-1], 257)
    ids = list(generate_ids(model, [1], 300, temperature=1.0, top_p=0.8, seed=0))
    assert set(ids) == {0, 1}


def _tiny_lm():
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=257, context_length=8, d_model=32, num_layers=1, num_heads=4, d_ff=64))


def test_greedy_is_deterministic_and_is_the_argmax(tokenizer):
    model = _tiny_lm()
    a = list(generate_ids(model, [72, 105], 12, temperature=0))
    b = list(generate_ids(model, [72, 105], 12, temperature=0))
    assert a == b and len(a) == 12  # the prompt (2) + 12 > context 8: the window slides
    ids = [72, 105]
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    assert ids[2:] == a


def test_seeded_sampling_repeats(tokenizer):
    model = _tiny_lm()
    runs = [generate(model, tokenizer, "Hi", 10, temperature=1.0, top_p=0.9, seed=5) for _ in range(2)]
    assert runs[0] == runs[1]


def test_stops_at_end_of_text(tokenizer):
    model = Scripted([ord("o"), ord("k"), 256, ord("x")], prompt_len=2)
    assert generate(model, tokenizer, "hi", 50, temperature=0) == "ok"
    assert len(model.seen) == 3  # nothing generated after <|endoftext|>


def test_prompt_cannot_forge_special_tokens(tokenizer):
    model = Scripted([ord("a")], prompt_len=1)
    with pytest.raises(SpecialTokenNotAllowedError):
        generate(model, tokenizer, f"story{EOT}", 3, temperature=0)
    assert generate(model, tokenizer, f"story{EOT}", 3, temperature=0, allow_special=True) == "aaa"


def test_streaming_yields_whole_characters(tokenizer):
    e_acute = "é".encode()
    model = Scripted([ord("a"), e_acute[0], e_acute[1], ord("b"), 256], prompt_len=1)
    pieces = list(stream(model, tokenizer, "x", 10, temperature=0))
    assert pieces == ["a", "é", "b"]
    seen = []
    assert generate(Scripted([ord("a"), 256], 1), tokenizer, "x", 5, temperature=0, callback=seen.append) == "a" == "".join(seen)


def test_bad_sampling_settings(tokenizer):
    from tinylm.errors import ConfigError

    model = Scripted([65], 1)
    with pytest.raises(ConfigError, match="top_p"):
        generate(model, tokenizer, "x", 2, top_p=0)
    with pytest.raises(ConfigError, match="temperature"):
        generate(model, tokenizer, "x", 2, temperature=-1)
    with pytest.raises(ConfigError, match="empty"):
        generate(model, tokenizer, "", 2)


class Recording(Scripted):
    """Scripted, also keeping every id the model was shown."""

    def forward(self, ids):
        self.ids = getattr(self, "ids", set()) | set(ids.flatten().tolist())
        return super().forward(ids)


@pytest.mark.parametrize("near_miss", ["<|endoftext", "endoftext|>", "<|endoftext |>", "<|ENDOFTEXT|>", "<<|endoftext>|>"])
def test_forged_end_of_text_never_reaches_the_model(tokenizer, near_miss):
    eot_id = tokenizer.special_to_id[EOT]
    model = Recording([ord("a")], prompt_len=1)
    with pytest.raises(SpecialTokenNotAllowedError):
        generate(model, tokenizer, f"Once{EOT}upon", 3, temperature=0)
    assert not model.seen  # refused before the model ran
    generate(model, tokenizer, f"Once{near_miss}upon", 3, temperature=0)  # look-alikes are plain text
    assert eot_id not in model.ids
    generate(model, tokenizer, f"Once{EOT}upon", 3, temperature=0, allow_special=True)  # the documented opt-in
    assert eot_id in model.ids


# --- sampling at its limits (issue 11, part 5) -------------------------------------------------------

@pytest.mark.parametrize("temperature", [1e-40, 1e-300, 5e-324])
def test_a_tiny_temperature_is_the_greedy_limit(temperature):
    logits = torch.tensor([0.5, 3.0, 2.9999, -1.0, -math.inf])
    gen = torch.Generator().manual_seed(0)
    assert [sample_next(logits, temperature, 1.0, gen) for _ in range(20)] == [1] * 20
    model = _tiny_lm()
    assert list(generate_ids(model, [72, 105], 6, temperature=temperature, seed=0)) == list(
        generate_ids(model, [72, 105], 6, temperature=0)
    )


def test_a_huge_temperature_is_the_uniform_limit():
    logits = torch.tensor([30.0, 0.0, -30.0, -math.inf])
    draws = sample(logits.expand(3000, 4), 1e300, 1.0, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4)
    assert counts[3] == 0 and all(abs(int(c) - 1000) < 150 for c in counts[:3])  # 1000 ± 5 standard deviations


@pytest.mark.parametrize("temperature", [math.nan, math.inf, -math.inf, -1.0, -1e-300, 10**400, "0.5", True, None])
def test_a_non_finite_or_negative_temperature_is_one_config_error(temperature):
    with pytest.raises(ConfigError, match="temperature"):
        list(generate_ids(_tiny_lm(), [1], 3, temperature=temperature))
    with pytest.raises(ConfigError, match="temperature"):
        sample_next(torch.zeros(4), temperature, 1.0, None)


@pytest.mark.parametrize("top_p", [math.nan, 0.0, -0.5, 1.0000001, math.inf, -math.inf])
def test_a_top_p_outside_zero_one_is_one_config_error(top_p):
    with pytest.raises(ConfigError, match="top_p"):
        list(generate_ids(_tiny_lm(), [1], 3, top_p=top_p))


def test_settings_are_checked_at_the_call_not_at_the_first_token(tokenizer):
    with pytest.raises(ConfigError, match="temperature"):
        stream(_tiny_lm(), tokenizer, "x", 3, temperature=math.nan)  # nothing iterated yet


def test_nan_logits_are_one_clear_error():
    with pytest.raises(TinylmError, match="NaN"):
        sample_next(torch.tensor([0.0, math.nan, 1.0]), 1.0, 1.0, None)
    with pytest.raises(TinylmError, match="all -inf"):
        sample_next(torch.tensor([-math.inf, 5.0]), 1.0, 1.0, None, allowed=torch.tensor([True, False]))


TEMPERATURES = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=1.7e308, allow_nan=False, allow_infinity=False, allow_subnormal=True),
    st.sampled_from([5e-324, 2.2e-308, 1e-300, 1e-40, 1e-8, 1e300, 1.7e308]),
)
TOP_PS = st.one_of(st.just(1.0), st.floats(min_value=0.0, max_value=1.0, exclude_min=True), st.sampled_from([5e-324, 1e-300]))
LOGITS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),  # up to float32's largest, ±3.4e38
    st.sampled_from([math.inf, -math.inf, 1e30, -1e30, 0.0]),
)


@settings(max_examples=100, deadline=None)
@given(
    temperature=TEMPERATURES,
    top_p=TOP_PS,
    rows=st.integers(1, 3).flatmap(lambda v: st.lists(st.lists(LOGITS, min_size=v, max_size=v), min_size=1, max_size=3)),
    allowed_bits=st.lists(st.booleans(), min_size=3, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_accepted_setting_samples_a_possible_allowed_id(temperature, top_p, rows, allowed_bits, seed):
    """The kind: any finite temperature >= 0, any top_p in (0, 1], logits with ±inf and float32's
    extremes, any mask of allowed ids: an allowed id comes back (never a traceback), never one of
    logit -inf, only among the +inf ones when there are some, and never one that softmax at this
    temperature gives probability 0 (exp underflows below -745: a tiny temperature is greedy)."""
    logits = torch.tensor(rows, dtype=torch.float32)
    vocab = logits.shape[-1]
    allowed = torch.tensor(allowed_bits[:vocab])
    assume(bool(allowed.any()))
    usable = logits.double().masked_fill(~allowed, -math.inf)
    if (usable == -math.inf).all(dim=-1).any():
        with pytest.raises(TinylmError, match="all -inf"):
            sample(logits, temperature, top_p, torch.Generator().manual_seed(seed), allowed)
        return
    ids = sample(logits, temperature, top_p, torch.Generator().manual_seed(seed), allowed)
    assert ids.shape == logits.shape[:-1] and ids.dtype == torch.long
    for row, token in zip(usable, ids.tolist()):
        value, top = float(row[token]), float(row.max())
        assert allowed[token] and value > -math.inf
        if top == math.inf:
            assert value == math.inf
        elif temperature == 0:
            assert value == top
        else:
            assert (top - value) / temperature <= 746


# --- models whose vocabulary is larger than the tokenizer's (issue 11, part 5) --------------------------

def _padded_lm():
    """vocab 320 over the 257-id byte tokenizer (padded as nanoGPT / llm.c do), padding made likely."""
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=320, context_length=8, d_model=32, num_layers=1, num_heads=4, d_ff=64))
    with torch.no_grad():
        model.lm_head.weight[257:] *= 30  # rows that training never pushes down: here they win
    return model


def test_padding_ids_are_never_sampled(tokenizer):
    model = _padded_lm()
    assert int(model(torch.tensor([[72]]))[0, -1].argmax()) >= 257  # the model itself prefers padding
    for temperature in (0, 1.0, 1e3):
        generate(model, tokenizer, "Hi", 30, temperature=temperature, seed=0)  # before: UnknownTokenError
        for use_cache in (True, False):
            ids = list(generate_ids(model, [72], 30, temperature, seed=1, allowed_ids=tokenizer.vocab.keys(), use_cache=use_cache))
            assert len(ids) == 30 and max(ids) < 257
    texts = generate_samples(model, tokenizer, "Hi", 4, 20, temperature=1e3, seed=0)
    assert len(texts) == 4


@settings(max_examples=15, deadline=None)
@given(allowed=st.sets(st.integers(0, 319), min_size=1, max_size=40), temperature=st.sampled_from([0.0, 1.0, 1e3]), seed=st.integers(0, 1000))
def test_only_the_allowed_ids_are_ever_sampled(allowed, temperature, seed):
    """A tokenizer's ids can have holes (special tokens anywhere in the id range): the mask follows them."""
    model = _padded_lm()
    rows = generate_batch(model, [[1, 2], [3, 4], [5]], 6, temperature, seed=seed, allowed_ids=allowed)
    assert all(set(row) <= allowed and len(row) == 6 for row in rows)


# --- the KV cache in generation (issue 14) -------------------------------------------------------------

CACHE_VARIANTS = {
    "fast": {},
    "reference": {"fused_attention": False, "autocast": "none"},
    "nope": {"position": "none"},
    "post-norm": {"norm": "post"},
    "no-norm-silu": {"norm": "none", "ffn": "silu"},
    "bf16": {"autocast": "bf16"},
}


def _lm(context_length=12, seed=0, **changes):
    torch.manual_seed(seed)
    return TransformerLM(ModelConfig(vocab_size=257, context_length=context_length, d_model=32, num_layers=2,
                                     num_heads=4, d_ff=64, **changes))


def _window_logits(model, ids):
    """What recomputation sees: the last context_length ids at positions 0.., next-token logits (V,)."""
    with torch.no_grad():
        return model(torch.tensor([ids[-model.config.context_length:]]))[0, -1]


def assert_same_greedy_tokens(model, prompt, new_tokens, cached, logit_tolerance):
    """`cached` equals greedy recomputation, except that the two may part at a near-tie: where they
    first differ, the recomputed logits of the two choices must be within rounding of each other."""
    recomputed = list(generate_ids(model, prompt, new_tokens, temperature=0, use_cache=False))
    assert len(cached) == len(recomputed) == new_tokens
    if cached != recomputed:
        i = next(i for i, (a, b) in enumerate(zip(cached, recomputed)) if a != b)
        logits = _window_logits(model, prompt + recomputed[:i])
        assert abs(float(logits[cached[i]] - logits[recomputed[i]])) <= logit_tolerance(model.config, logits)


@pytest.mark.parametrize("variant", CACHE_VARIANTS)
def test_cached_greedy_decoding_equals_recomputation(variant, logit_tolerance):
    """Inside the context and past it (12 + 3 prompt tokens + 20 new > context 12: the window slides)."""
    model = _lm(**CACHE_VARIANTS[variant])
    for prompt in ([72, 105, 33], list(range(40, 60))):  # the second is longer than the context
        cached = list(generate_ids(model, prompt, 20, temperature=0))
        assert_same_greedy_tokens(model, prompt, 20, cached, logit_tolerance)


@settings(max_examples=15, deadline=None)
@given(
    variant=st.sampled_from(sorted(CACHE_VARIANTS)),
    context_length=st.integers(1, 10),
    prompt=st.lists(st.integers(0, 256), min_size=1, max_size=14),
    new_tokens=st.integers(0, 16),
    seed=st.integers(0, 3),
)
def test_cached_decoding_equals_windowed_recomputation_for_any_context(variant, context_length, prompt, new_tokens, seed, logit_tolerance):
    model = _lm(context_length, seed, **CACHE_VARIANTS[variant])
    cached = list(generate_ids(model, prompt, new_tokens, temperature=0))
    assert_same_greedy_tokens(model, prompt, new_tokens, cached, logit_tolerance)


class CountingLM(TransformerLM):
    """A TransformerLM that records how many positions each forward call was given."""

    def forward(self, ids, positions=None, kv_cache=None):
        self.lengths = getattr(self, "lengths", []) + [ids.shape[-1]]
        return super().forward(ids, positions, kv_cache)


def test_the_prompt_is_processed_once_then_one_position_per_token():
    torch.manual_seed(0)
    model = CountingLM(ModelConfig(vocab_size=257, context_length=12, d_model=32, num_layers=2, num_heads=4, d_ff=64))
    list(generate_ids(model, [1, 2, 3], 10, temperature=0))
    assert model.lengths == [3] + [1] * 9  # 12 positions in all: the last token needs no pass after it
    model.lengths = []
    list(generate_ids(model, [1, 2, 3], 10, temperature=0, use_cache=False))
    assert model.lengths == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    model.lengths = []
    list(generate_ids(model, list(range(10)), 5, temperature=0))
    assert model.lengths == [10, 1, 1, 12, 12]  # full at 12: re-filled from the last window each step


def test_cached_logits_follow_recomputation_step_by_step(logit_tolerance):
    """Every step's cached logits (not only the argmax) are within tolerance of the recomputed ones."""
    model = _lm(context_length=16)
    from tinylm.generate import _decode_steps

    ids = [5, 6, 7]
    steps = _decode_steps(model.eval(), torch.tensor([ids]), use_cache=True)
    with torch.no_grad():
        logits = next(steps)[0]
        for _ in range(25):
            expected = _window_logits(model, ids)
            torch.testing.assert_close(logits, expected, atol=logit_tolerance(model.config, expected), rtol=0)
            ids.append(int(expected.argmax()))
            logits = steps.send(torch.tensor([ids[-1]]))[0]


def test_a_batch_decodes_like_each_prompt_alone(logit_tolerance):
    model = _lm()
    prompts = [[72, 105], [1, 2], [3], [200, 100], list(range(30, 45))]
    for use_cache in (True, False):
        rows = generate_batch(model, prompts, 15, temperature=0, use_cache=use_cache)
        for prompt, row in zip(prompts, rows):
            assert_same_greedy_tokens(model, prompt, 15, row, logit_tolerance)


def test_each_row_of_a_batch_stops_at_its_own_end_of_text():
    class PerRow(Scripted):
        """Row r produces r+1 copies of 'a', then <|endoftext|>."""

        def forward(self, ids):
            self.seen.append(ids.shape[-1])
            step = ids.shape[-1] - self.prompt_len
            logits = torch.full((ids.shape[0], ids.shape[-1], 257), -10.0)
            for r in range(ids.shape[0]):
                logits[r, -1, 256 if step > r else ord("a")] = 10.0
            return logits

    model = PerRow([0], prompt_len=1)
    assert generate_batch(model, [[1], [2], [3]], 10, temperature=0, stop_id=256) == [[97], [97, 97], [97, 97, 97]]
    assert len(model.seen) == 4  # stopped once every row had stopped


def test_seeded_batches_repeat_and_rows_differ(tokenizer):
    model = _lm()
    a = generate_samples(model, tokenizer, "Hi", 3, 12, temperature=1.0, seed=7)
    assert a == generate_samples(model, tokenizer, "Hi", 3, 12, temperature=1.0, seed=7)
    assert len(set(a)) > 1
    with pytest.raises(ConfigError, match="num_samples"):
        generate_samples(model, tokenizer, "Hi", 0)


@pytest.mark.parametrize("setting", [{"temperature": math.nan}, {"temperature": 1e400}, {"top_p": 0.0}])
def test_quickstart_refuses_bad_sampling_settings_before_training(setting):
    from tinylm.quickstart import QuickstartConfig

    with pytest.raises(ConfigError, match="temperature|top_p"):
        QuickstartConfig(**setting).validate()
