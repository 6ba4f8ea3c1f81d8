"""ModelConfig: the one dataclass that describes a TransformerLM.

Shape fields, the four ablation switches and the fast-path switches live together so that a
checkpoint or a TOML file can rebuild exactly the model that was trained (`to_dict`/`from_dict`).
Every impossible setting is rejected here, with a message naming the field, not later as an
obscure shape error inside a matmul.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tinylm.errors import ConfigError

NORMS = ("pre", "post", "none")
POSITIONS = ("rope", "none", "learned")
FFNS = ("swiglu", "silu", "relu2", "gelu")
NORM_TYPES = ("rms", "layer")
AUTOCASTS = ("auto", "bf16", "none")


def default_d_ff(d_model: int, ffn: str = "swiglu") -> int:
    """SwiGLU: 8/3·d_model rounded to a multiple of 64; the ungated ones (SiLU, ReLU², GELU): 4·d_model
    (two matrices of 4·d_model have about the parameters of SwiGLU's three of 8/3·d_model)."""
    if ffn != "swiglu":
        return 4 * d_model
    return max(64, round(8 * d_model / 3 / 64) * 64)


@dataclass
class ModelConfig:
    """Shape, ablations and fast paths of a TransformerLM (defaults: the TinyStories model).

    Ablations: `norm` "pre" (default) | "post" (norm after the residual add) | "none";
    `position` "rope" | "none" (NoPE) | "learned" (GPT-2's table of context_length position vectors
    added to the token embeddings); `ffn` "swiglu" | "silu" (W2·SiLU(W1 x)) | "relu2" (W2·ReLU(W1 x)²,
    modded-nanogpt) | "gelu" (W2·GELU(W1 x), GPT-2), the ungated ones with d_ff = 4·d_model.
    `d_ff=None` means the default for the chosen `ffn` (see `ffn_dim`).
    `norm_type` "rms" (RMSNorm, default) | "layer" (LayerNorm with gain and bias, GPT-2);
    `qk_norm` RMSNorm (a gain per head dimension, shared by the heads) on each head's queries and keys
    before RoPE (OLMo 2, modded-nanogpt); `tie_embeddings` one (vocab_size, d_model) matrix both embeds
    tokens and projects to logits (GPT-2; the state dict then has no lm_head.weight);
    `zero_init_residual` the last projection of each block's attention (output_proj) and feed-forward
    (w2) starts at zero, so every block starts as the identity on the residual stream (torchvision's
    `zero_init_residual`, Goyal et al. 2017; modded-nanogpt zero-initialises these projections);
    `logit_softcap` c > 0 maps the logits z to c·tanh(z / c), so none passes ±c (Gemma 2's final-logit
    soft-capping, c = 30; modded-nanogpt, c = 30 then 15); 0 leaves them as they are; `embed_norm` a
    norm of `norm_type` (with its gain) on the token embeddings before the first block, so the residual
    stream starts at a fixed scale however large the embedding rows grow (modded-nanogpt's
    norm(embed(idx))).
    The defaults of all of these are the course's model, so configs saved before they existed
    rebuild the same model.

    Fast paths (same numbers within tested tolerances, see tests/model/test_fast_paths.py):
    `fused_attention` uses F.scaled_dot_product_attention(is_causal=True); `autocast` "auto" runs
    in bf16 autocast on CUDA only (where it wins), "bf16" everywhere, "none" never; `compile`
    wraps the forward in torch.compile (state-dict keys unchanged).
    """

    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int | None = None
    rope_theta: float = 10_000.0
    norm: str = "pre"
    position: str = "rope"
    ffn: str = "swiglu"
    norm_eps: float = 1e-5
    fused_attention: bool = True
    autocast: str = "auto"
    compile: bool = False
    norm_type: str = "rms"
    qk_norm: bool = False
    tie_embeddings: bool = False
    zero_init_residual: bool = False
    logit_softcap: float = 0.0
    embed_norm: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            _check_positive_int(name, getattr(self, name))
        if self.d_ff is not None:
            _check_positive_int("d_ff", self.d_ff)
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"model config: {name} must be a positive number, got {value!r}")
            setattr(self, name, float(value))
        for name, allowed in (("norm", NORMS), ("position", POSITIONS), ("ffn", FFNS), ("autocast", AUTOCASTS),
                              ("norm_type", NORM_TYPES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"model config: {name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        for name in ("fused_attention", "compile", "qk_norm", "tie_embeddings", "zero_init_residual", "embed_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model config: {name} must be true or false, got {getattr(self, name)!r}")
        softcap = self.logit_softcap
        if isinstance(softcap, bool) or not isinstance(softcap, (int, float)) or not softcap >= 0 or softcap == float("inf"):
            raise ConfigError(f"model config: logit_softcap must be 0 (off) or a positive finite number, got {softcap!r}")
        self.logit_softcap = float(softcap)
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"model config: d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(
                f"model config: RoPE rotates pairs, so the head dimension d_model/num_heads = {self.head_dim} must be even"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def ffn_dim(self) -> int:
        """The feed-forward width actually built: `d_ff`, or the default for `ffn`."""
        return self.d_ff if self.d_ff is not None else default_d_ff(self.d_model, self.ffn)

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def reference(self) -> ModelConfig:
        """The same model on the from-scratch path only: no fused attention, autocast or compile."""
        return self.replace(fused_attention=False, autocast="none", compile=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def field_defaults(cls) -> dict:
        """Every field's default: what a config (or checkpoint) saved before the field existed meant."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build from a dict (a checkpoint, a TOML table); unknown keys are an error, not ignored."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a table of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown model config key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**data)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
