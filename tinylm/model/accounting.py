"""What a ModelConfig costs: parameters, forward FLOPs, training memory — the sums a person writes by hand.

Every count is a row with its formula, so the printed table can be checked with a pencil.
Symbols: V vocab, T tokens (context), d d_model, L layers, H heads, f d_ff. FLOPs count matrix
multiplies only (2·m·n·k each), for one sequence of T tokens, the full T×T score matrix included
(the reference path computes it; the causal mask does not skip work). Memory assumes float32
everywhere and AdamW, with no activation checkpointing.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinylm.errors import ConfigError
from tinylm.units import parse_memory  # noqa: F401  (re-exported: accounting.parse_memory)
from tinylm.model.config import ModelConfig

_GPT2 = dict(vocab_size=50_257, context_length=1_024, rope_theta=10_000.0)
PRESETS: dict[str, ModelConfig] = {
    "gpt2-small": ModelConfig(**_GPT2, d_model=768, num_layers=12, num_heads=12, d_ff=3_072),
    "gpt2-medium": ModelConfig(**_GPT2, d_model=1_024, num_layers=24, num_heads=16, d_ff=4_096),
    "gpt2-large": ModelConfig(**_GPT2, d_model=1_280, num_layers=36, num_heads=20, d_ff=5_120),
    "gpt2-xl": ModelConfig(**_GPT2, d_model=1_600, num_layers=48, num_heads=25, d_ff=6_400),
    "tinystories": ModelConfig(
        vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1_344,
        rope_theta=10_000.0,
    ),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name].replace()  # a copy: callers may change it
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class Row:
    """One line of a hand-written table: what, how it is computed, how much."""

    name: str
    formula: str
    value: int
    group: str = ""


# ---------------------------------------------------------------------------------------- parameters
def param_rows(config: ModelConfig) -> list[Row]:
    d, L, V, f = config.d_model, config.num_layers, config.vocab_size, config.ffn_dim
    n_ffn = 3 if config.ffn == "swiglu" else 2
    rows = [
        Row("token embeddings", "V·d", V * d, "embedding"),
        Row("attention Q,K,V,O", "L·4·d²", L * 4 * d * d, "attention"),
        Row(f"feed-forward ({config.ffn})", f"L·{n_ffn}·d·f", L * n_ffn * d * f, "feed-forward"),
    ]
    if config.position == "learned":
        rows.insert(1, Row("position embeddings", "T·d", config.context_length * d, "embedding"))
    if config.norm != "none":
        name, per = ("LayerNorms", 2) if config.norm_type == "layer" else ("RMSNorms", 1)  # LayerNorm: gain and bias
        times = "2·" if per == 2 else ""
        rows += [
            Row(f"block {name}", f"L·2·{times}d", L * 2 * per * d, "norm"),
            Row(f"final {name[:-1]}", f"{times}d", per * d, "norm"),
        ]
    if config.qk_norm:
        rows.append(Row("QK-norm gains", "L·2·d_head", L * 2 * config.head_dim, "norm"))
    if config.embed_norm:
        per = 2 if config.norm_type == "layer" else 1
        rows.append(Row("embedding norm", "2·d" if per == 2 else "d", per * d, "norm"))
    if not config.tie_embeddings:
        rows.append(Row("output projection", "d·V", d * V, "output"))
    return rows


def count_params(config: ModelConfig) -> int:
    return sum(r.value for r in param_rows(config))


# --------------------------------------------------------------------------------------------- FLOPs
def flop_rows(config: ModelConfig, context_length: int | None = None) -> list[Row]:
    """Forward FLOPs of each matrix multiply for one sequence of T tokens."""
    T = context_length or config.context_length
    d, L, V, f = config.d_model, config.num_layers, config.vocab_size, config.ffn_dim
    rows = [
        Row("Q, K, V projections", "L·3·2·T·d²", L * 3 * 2 * T * d * d, "attention"),
        Row("scores Q·Kᵀ", "L·2·T²·d", L * 2 * T * T * d, "attention"),
        Row("weights·V", "L·2·T²·d", L * 2 * T * T * d, "attention"),
        Row("output projection (attention)", "L·2·T·d²", L * 2 * T * d * d, "attention"),
    ]
    if config.ffn == "swiglu":
        rows += [Row("FFN W1, W3", "L·2·2·T·d·f", L * 2 * 2 * T * d * f, "feed-forward")]
    else:
        rows += [Row("FFN W1", "L·2·T·d·f", L * 2 * T * d * f, "feed-forward")]
    rows += [
        Row("FFN W2", "L·2·T·f·d", L * 2 * T * f * d, "feed-forward"),
        Row("LM head", "2·T·d·V", 2 * T * d * V, "output"),
    ]
    return rows


def forward_flops(config: ModelConfig, context_length: int | None = None) -> int:
    return sum(r.value for r in flop_rows(config, context_length))


def flop_shares(config: ModelConfig, context_length: int | None = None) -> dict[str, float]:
    """Fraction of forward FLOPs in attention (projections + T² part), feed-forward and output."""
    rows = flop_rows(config, context_length)
    total = sum(r.value for r in rows)
    shares = {"attention": 0.0, "feed-forward": 0.0, "output": 0.0}
    for r in rows:
        shares[r.group] += r.value / total
    return shares


def context_scaling(config: ModelConfig, lengths) -> list[tuple[int, int, dict[str, float]]]:
    """(T, forward FLOPs, shares) per context length: attention's T² term takes over as T grows."""
    return [(T, forward_flops(config, T), flop_shares(config, T)) for T in lengths]


# -------------------------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryEstimate:
    """Training memory = per_sequence·batch_size + fixed (bytes)."""

    fixed_rows: list[Row]  # bytes independent of batch size
    activation_rows: list[Row]  # floats saved per sequence
    bytes_per_float: int

    @property
    def fixed(self) -> int:  # b
        return sum(r.value for r in self.fixed_rows)

    @property
    def per_sequence(self) -> int:  # a
        return self.bytes_per_float * sum(r.value for r in self.activation_rows)

    def total(self, batch_size: int) -> int:
        return self.per_sequence * batch_size + self.fixed

    def max_batch(self, memory_bytes: int) -> int:
        """Largest batch that fits (0 if even the weights and optimizer state do not)."""
        return max(0, (memory_bytes - self.fixed) // self.per_sequence)


def training_memory(
    config: ModelConfig, context_length: int | None = None, bytes_per_float: int = 4
) -> MemoryEstimate:
    """AdamW training: params, grads and two moment tensors (b), plus activations kept for backward (a).

    Activations are the outputs of each op that backward needs, counted the hand way per sequence.
    """
    T = context_length or config.context_length
    d, L, V, H, f = config.d_model, config.num_layers, config.vocab_size, config.num_heads, config.ffn_dim
    P, B = count_params(config), bytes_per_float
    fixed = [
        Row("parameters", f"{B}·P", B * P),
        Row("gradients", f"{B}·P", B * P),
        Row("AdamW state (m, v)", f"2·{B}·P", 2 * B * P),
    ]
    norms = config.norm != "none"
    ffn_acts = 4 if config.ffn == "swiglu" else 2  # swiglu: W1, W3, SiLU, product; silu: W1, SiLU
    acts = [
        Row("embedding output", "T·d", T * d),
        Row("RMSNorms in blocks", "L·2·T·d", L * 2 * T * d if norms else 0),
        Row("Q, K, V", "L·3·T·d", L * 3 * T * d),
        Row("scores Q·Kᵀ", "L·H·T²", L * H * T * T),
        Row("softmax", "L·H·T²", L * H * T * T),
        Row("weights·V", "L·T·d", L * T * d),
        Row("attention output projection", "L·T·d", L * T * d),
        Row(f"FFN inner ({config.ffn})", f"L·{ffn_acts}·T·f", L * ffn_acts * T * f),
        Row("FFN W2", "L·T·d", L * T * d),
        Row("final RMSNorm", "T·d", T * d if norms else 0),
        Row("logits", "T·V", T * V),
        Row("cross-entropy softmax", "T·V", T * V),
    ]
    return MemoryEstimate(fixed, [r for r in acts if r.value], bytes_per_float)


