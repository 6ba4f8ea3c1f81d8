"""Models out: a tinylm run as a Hugging Face Llama folder, and tinylm weights as safetensors.

tinylm's default model is the Llama architecture: pre-norm RMSNorm, SwiGLU feed-forward, RoPE, no
biases, untied input and output embeddings. `export_llama` writes it as a folder that
`transformers.AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load
(config.json for `LlamaForCausalLM`, model.safetensors, generation_config.json, tokenizer.json,
tokenizer_config.json, vocab.json, merges.txt). Every parameter maps one to one, except for one
convention:

- RoPE pairs. tinylm rotates the pairs (x[2i], x[2i+1]) of each head (RoFormer's and Meta's
  original layout); Hugging Face's Llama rotates (x[i], x[i + d/2]) (`rotate_half`). Both give
  pair i the frequency θ^(-2i/d). So the rows of each head in W_q and W_k are reordered from
  (0, 1, 2, 3, ..., d-2, d-1) to (0, 2, ..., d-2, 1, 3, ..., d-1): the same reordering as the
  `permute` in transformers' convert_llama_weights_to_hf.py, which converts Meta's checkpoints
  (tinylm's layout). q·k is unchanged by the same reordering of both, and V and the output
  projection keep tinylm's order.

Within the model's context_length, greedy decoding in transformers continues a prompt exactly as
`tinylm generate --temperature 0` does; past it tinylm slides its window over the last
context_length tokens, while transformers keeps extending the positions (max_position_embeddings
is set to context_length, so it warns).

Models Llama cannot express (the ablations: no norm, post-norm, NoPE, the ungated SiLU
feed-forward) are refused with a ConfigError naming the setting.

`save_safetensors` / `load_safetensors` keep tinylm's own parameter names and record the
ModelConfig in the file's metadata: weights that load without unpickling anything.

Needs the optional packages `safetensors` and `tokenizers` (`pip install 'tinylm[hf]'`, which
also brings `transformers` to load the result).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import torch

from tinylm.errors import CheckpointError, ConfigError
from tinylm.io import atomic_write_files, ensure_output_dir
from tinylm.model.config import ModelConfig
from tinylm.tokenizer.files import (
    MERGES_FILE,
    SPECIAL_TOKENS_FILE,
    VOCAB_FILE,
    merges_txt_bytes,
    special_tokens_json_bytes,
    vocab_json_bytes,
)
from tinylm.tokenizer.hf_json import tokenizer_json_bytes

END_OF_TEXT = "<|endoftext|>"
WEIGHTS_FILE = "model.safetensors"
FORMATS = ("llama", "safetensors")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Written into a tinylm safetensors file's metadata (string -> string, the format's rule).
_FORMAT_KEY, _FORMAT_VALUE = "tinylm_format", "1"
_CONFIG_KEY = "model_config"


# --- what Llama can express ------------------------------------------------------------------------
_NOT_LLAMA = {
    ("norm", "post"): "Llama normalises before each sublayer (pre-norm); a post-norm model computes another function",
    ("norm", "none"): "Llama has an RMSNorm before each sublayer and before the output; this model has none",
    ("position", "none"): "Llama rotates queries and keys with RoPE; a NoPE model (no positions) computes another function",
    ("ffn", "silu"): "Llama's feed-forward is gated (SwiGLU: W2(SiLU(W1 x) * W3 x)); the ungated SiLU feed-forward has no W3",
    ("ffn", "relu2"): "Llama's feed-forward is gated SwiGLU; a ReLU² feed-forward (W2·ReLU(W1 x)²) computes another function",
    ("ffn", "gelu"): "Llama's feed-forward is gated SwiGLU; a GELU MLP (W2·GELU(W1 x)) computes another function",
    ("position", "learned"): "Llama rotates queries and keys with RoPE and has no table of learned position vectors",
    ("norm_type", "layer"): "Llama's norms are RMSNorms with a gain only; LayerNorm also subtracts the mean and adds a bias",
    ("qk_norm", True): "Llama has no norm on queries and keys (QK-norm); without it the attention scores differ",
}
# tie_embeddings maps to Llama's tie_word_embeddings (config.json), with no lm_head.weight written.


def check_llama_compatible(config: ModelConfig) -> None:
    """Raise ConfigError naming the first setting that Llama cannot express (the ablations)."""
    for (field, value), why in _NOT_LLAMA.items():
        if getattr(config, field) == value:
            raise ConfigError(
                f"cannot export as Llama: model.{field}={value!r}: {why}; "
                "use `tinylm export --format safetensors` to keep tinylm's own weights"
            )
    if config.embed_norm:
        raise ConfigError(
            "cannot export as Llama: model.embed_norm=True: Llama adds no norm after the token embeddings, "
            "so every hidden state would differ; use `tinylm export --format safetensors` to keep tinylm's own weights"
        )
    if config.logit_softcap > 0:
        raise ConfigError(
            f"cannot export as Llama: model.logit_softcap={config.logit_softcap!r}: Llama's logits are not "
            "soft-capped, so every logit would differ; use `tinylm export --format safetensors` to keep "
            "tinylm's own weights"
        )


# --- weights ---------------------------------------------------------------------------------------
def rope_rows_to_half_split(head_dim: int) -> torch.Tensor:
    """Row order taking one head's q/k rows from tinylm's RoPE layout to Hugging Face's.

    Returns a LongTensor `order` of shape (head_dim,) with hf_rows = tinylm_rows[order]:
    (0, 2, 4, ..., head_dim-2, 1, 3, ..., head_dim-1). tinylm pairs dims (2i, 2i+1)
    (tinylm/model/layers.py, RotaryPositionalEmbedding); HF Llama pairs (i, i + head_dim/2)
    (`rotate_half`); both rotate pair i by pos·θ^(-2i/head_dim).
    """
    if head_dim % 2:
        raise ConfigError(f"RoPE needs an even head dimension, got {head_dim}")
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


def _permute_rope_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(d_model, d_in) projection whose rows are num_heads blocks of head_dim -> HF's row order."""
    d_out, d_in = weight.shape
    head_dim = d_out // num_heads
    order = rope_rows_to_half_split(head_dim)
    return weight.reshape(num_heads, head_dim, d_in)[:, order].reshape(d_out, d_in)


def llama_state_dict(model: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A TransformerLM's parameters under LlamaForCausalLM's names (contiguous CPU tensors).

    tinylm -> HF: token_embeddings -> model.embed_tokens; layers.i.ln1 / ln2 ->
    input_layernorm / post_attention_layernorm; attn.{q,k,v,output}_proj -> self_attn.{q,k,v,o}_proj
    (q and k rows reordered per head, see rope_rows_to_half_split); ffn.w1 / w3 / w2 ->
    mlp.gate_proj / up_proj / down_proj; ln_final -> model.norm; lm_head -> lm_head (left out when
    the embeddings are tied: config.json's tie_word_embeddings then shares embed_tokens).
    `dtype` (default: the model's) is the dtype written. Raises ConfigError for a model Llama
    cannot express.
    """
    model = getattr(model, "_orig_mod", model)
    config = model.config
    check_llama_compatible(config)
    src = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    heads = config.num_heads
    out = {"model.embed_tokens.weight": src["token_embeddings.weight"]}
    for i in range(config.num_layers):
        t, h = f"layers.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = src[t + "ln1.weight"]
        out[h + "self_attn.q_proj.weight"] = _permute_rope_rows(src[t + "attn.q_proj.weight"], heads)
        out[h + "self_attn.k_proj.weight"] = _permute_rope_rows(src[t + "attn.k_proj.weight"], heads)
        out[h + "self_attn.v_proj.weight"] = src[t + "attn.v_proj.weight"]
        out[h + "self_attn.o_proj.weight"] = src[t + "attn.output_proj.weight"]
        out[h + "post_attention_layernorm.weight"] = src[t + "ln2.weight"]
        out[h + "mlp.gate_proj.weight"] = src[t + "ffn.w1.weight"]
        out[h + "mlp.up_proj.weight"] = src[t + "ffn.w3.weight"]
        out[h + "mlp.down_proj.weight"] = src[t + "ffn.w2.weight"]
    out["model.norm.weight"] = src["ln_final.weight"]
    if not config.tie_embeddings:  # tied: HF's tie_word_embeddings reuses model.embed_tokens.weight
        out["lm_head.weight"] = src["lm_head.weight"]
    return {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in out.items()}


def llama_config(config: ModelConfig, tokenizer=None, dtype: torch.dtype = torch.float32) -> dict:
    """config.json for LlamaForCausalLM (readable by transformers 4.x and 5.x).

    vocab_size is the model's (it may exceed the tokenizer's: a padded vocabulary). The end-of-text
    token, when the tokenizer has one, is both BOS and EOS (GPT-2's convention); no BOS is ever
    added by the tokenizer. rope_theta is written both the old way and as rope_parameters (5.x).
    """
    check_llama_compatible(config)
    eot = tokenizer.special_to_id.get(END_OF_TEXT) if tokenizer is not None else None
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.ffn_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": None,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "dtype": str(dtype).removeprefix("torch."),
    }


# --- tokenizer files -------------------------------------------------------------------------------
def hf_tokenizer_files(tokenizer, model_max_length: int) -> dict[str, bytes]:
    """tokenizer.json, tokenizer_config.json, vocab.json and merges.txt for a tinylm Tokenizer.

    tokenizer.json is tinylm's own (tinylm/tokenizer/hf_json.py, the file `train-bpe` writes): a
    byte-level BPE model (merges applied lowest rank first, as tinylm does), the byte-level
    pre-tokenizer (the GPT-2 pattern, no prefix space) and decoder, and every special token as
    an added special token with its tinylm id (also non-ASCII ones, written verbatim). tokenizer_config.json names
    PreTrainedTokenizerFast so `AutoTokenizer` loads exactly that file (not Llama's
    SentencePiece-style tokenizer), adds no BOS and does not clean up spaces when decoding.
    """
    eot = END_OF_TEXT if END_OF_TEXT in tokenizer.special_to_id else None
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": None,
        "pad_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "additional_special_tokens": [t for t in tokenizer.special_tokens if t != eot],
    }
    return {
        "tokenizer.json": tokenizer_json_bytes(tokenizer.vocab, tokenizer.merges, tokenizer.special_tokens),
        "tokenizer_config.json": _json_bytes(config),
        VOCAB_FILE: vocab_json_bytes(tokenizer.vocab, tokenizer.special_tokens),
        MERGES_FILE: merges_txt_bytes(tokenizer.merges),
    }


# --- writing folders -------------------------------------------------------------------------------
def export_llama(run: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write a run (folder or checkpoint file) as a Hugging Face Llama folder; returns the folder.

    Files: config.json, generation_config.json, model.safetensors, tokenizer.json,
    tokenizer_config.json, vocab.json, merges.txt. All are written under temporary names and
    renamed together, and a folder this call created is removed again on failure, so nothing
    half-written is left. Raises ConfigError (a model Llama cannot express, a missing optional
    package), CheckpointError / InputFileError (the run), OutputError (the folder).
    """
    from tinylm.generate import load_run

    model, tokenizer = load_run(run)
    check_llama_compatible(model.config)
    files = _llama_files(model, tokenizer, dtype)
    return _write_folder(out, files)


def _llama_files(model, tokenizer, dtype: torch.dtype) -> dict[str, bytes]:
    safetensors_torch = _require("safetensors.torch")
    config = model.config
    eot = tokenizer.special_to_id.get(END_OF_TEXT)
    weights = safetensors_torch.save(llama_state_dict(model, dtype), metadata={"format": "pt"})
    return {
        "config.json": _json_bytes(llama_config(config, tokenizer, dtype)),
        "generation_config.json": _json_bytes({"bos_token_id": eot, "eos_token_id": eot}),
        WEIGHTS_FILE: weights,
        **hf_tokenizer_files(tokenizer, config.context_length),
    }


def export_safetensors(run: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a run's weights as tinylm safetensors plus its tokenizer; `load_safetensors` reads it back.

    Files: model.safetensors (tinylm parameter names, the ModelConfig in its metadata),
    vocab.json, merges.txt, special_tokens.json. Works for every ModelConfig, ablations included.
    """
    from tinylm.generate import load_run

    model, tokenizer = load_run(run)
    files = {
        WEIGHTS_FILE: safetensors_bytes(model),
        VOCAB_FILE: vocab_json_bytes(tokenizer.vocab),
        MERGES_FILE: merges_txt_bytes(tokenizer.merges),
        SPECIAL_TOKENS_FILE: special_tokens_json_bytes(tokenizer.special_tokens),
    }
    return _write_folder(out, files)


def export(run: str | os.PathLike, out: str | os.PathLike, format: str = "llama", dtype: str = "float32") -> Path:
    """`tinylm export`: format "llama" (export_llama, weights in `dtype`: float32, bfloat16 or
    float16) or "safetensors" (export_safetensors, always the checkpoint's own float32)."""
    if format not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}; got {format!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"export dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if format == "safetensors":
        if dtype != "float32":
            raise ConfigError("--dtype applies to --format llama only; tinylm safetensors keep the checkpoint's weights exactly")
        return export_safetensors(run, out)
    return export_llama(run, out, DTYPES[dtype])


def _write_folder(out: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Write all files into `out` at once; remove `out` again if this call created it and failed."""
    out = Path(out)
    created = not out.exists()
    try:
        folder = ensure_output_dir(out)
        atomic_write_files({folder / name: data for name, data in files.items()})
    except BaseException:
        if created and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
    return folder


# --- tinylm weights as safetensors -----------------------------------------------------------------
def safetensors_bytes(model: torch.nn.Module) -> bytes:
    """A model's state dict (tinylm names) as safetensors bytes, its ModelConfig in the metadata."""
    safetensors_torch = _require("safetensors.torch")
    model = getattr(model, "_orig_mod", model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", _FORMAT_KEY: _FORMAT_VALUE, _CONFIG_KEY: json.dumps(model.config.to_dict())}
    return safetensors_torch.save(tensors, metadata=metadata)


def save_safetensors(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write a TransformerLM's weights to `path` (a .safetensors file) atomically; returns the path.

    Tensors keep their dtype and tinylm's state-dict names (SPEC §5). Raises OutputError when the
    folder cannot be written, ConfigError when `safetensors` is not installed.
    """
    path = Path(path)
    ensure_output_dir(path.parent)
    atomic_write_files({path: safetensors_bytes(model)})
    return path


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a TransformerLM from `save_safetensors` output (a file, or a folder holding model.safetensors).

    Reads tensors and a JSON config only: nothing is unpickled. Raises CheckpointError for a
    missing, truncated or foreign file (e.g. a Hugging Face Llama export, whose names differ).
    """
    from tinylm.model.transformer import TransformerLM

    _require("safetensors.torch")
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    if not p.is_file():
        raise CheckpointError(f"no safetensors weights at {p}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get(_FORMAT_KEY) is None or _CONFIG_KEY not in metadata:
                raise CheckpointError(
                    f"{p} is not a tinylm safetensors file (no {_FORMAT_KEY} / {_CONFIG_KEY} metadata); "
                    "a Hugging Face export loads with transformers instead"
                )
            if metadata[_FORMAT_KEY] != _FORMAT_VALUE:
                raise CheckpointError(f"{p} has tinylm format {metadata[_FORMAT_KEY]}, which this tinylm does not read; upgrade tinylm")
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{p} is truncated or not a safetensors file ({exc})") from None
    try:
        config = ModelConfig.from_dict(json.loads(metadata[_CONFIG_KEY]))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: the model_config metadata is not valid JSON ({exc.msg})") from None
    model = TransformerLM(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{p}: weights do not fit its model_config: {str(exc).splitlines()[0]}") from None
    return model.to(device)


# --- helpers ---------------------------------------------------------------------------------------
def _require(module: str):
    """Import an optional dependency of the `hf` extra, or one ConfigError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ConfigError(f"exporting needs the optional package {package!r}: pip install 'tinylm[hf]'") from None


def _json_bytes(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
