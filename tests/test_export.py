"""`tinylm export`: Hugging Face Llama folders and tinylm safetensors weights, checked against transformers.

Offline: configs are built locally, HF_HUB_OFFLINE=1, nothing is downloaded.

Logit tolerance (fp32). tinylm and transformers compute the same real function with different
operation orders, so each differs from exact arithmetic by rounding. With u = 2^-24 (fp32 unit
roundoff), a length-n dot product carries a relative error of about sqrt(n)·u (the probabilistic
bound, Higham & Mary 2019); a logit passes 2L+1 such stages (attention and feed-forward of L
layers, then the output projection) with n ≤ max(d_model, d_ff, T). RoPE adds one more source:
transformers computes the angle pos·θ^(-2i/d) in fp32 (about 3 roundings of a number ≤ pos < T)
where tinylm uses float64, so each of the L attention stages sees a relative error of up to 3·T·u.
Errors are relative to S = max_v Σ_j |W_vj h_j|, the size of the terms summed into a logit
(computed in float64), and both implementations contribute:

    tol = 2 · u · S · ((2L + 1) · sqrt(n) + 3 · L · T)

Measured differences are 0.2-2% of tol; every mapping fault tried below (q/k rows in tinylm's
RoPE order, gate and up swapped, tied embeddings, HF's default eps or theta) is above 10·tol.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tinylm import ModelConfig, Tokenizer, TransformerLM, train_bpe  # noqa: E402
from tinylm.errors import CheckpointError, ConfigError  # noqa: E402
from tinylm.export import (  # noqa: E402
    export,
    export_llama,
    llama_config,
    llama_state_dict,
    load_safetensors,
    rope_rows_to_half_split,
    save_safetensors,
)
from tinylm.training.checkpoint import save_checkpoint  # noqa: E402

transformers.logging.set_verbosity_error()
EOT = "<|endoftext|>"
SPECIALS = [EOT, "<|pad|>"]
U32 = 2.0**-24
FIXTURE_TEXTS = ["address.txt", "corpus.en", "german.txt", "tinystories_sample.txt"]
ABLATIONS = [("norm", "post"), ("norm", "none"), ("position", "none"), ("ffn", "silu")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models on a shared 2-core machine


@pytest.fixture(scope="module")
def tokenizer(fixtures):
    vocab, merges = train_bpe(fixtures / "corpus.en", 300, SPECIALS)
    return Tokenizer(vocab, merges, SPECIALS)


def small_config(tokenizer, **changes) -> ModelConfig:
    """A model whose vocabulary is padded past the tokenizer's (300 -> 320), non-default eps and theta."""
    base = dict(vocab_size=320, context_length=32, d_model=32, num_layers=2, num_heads=4, d_ff=80, rope_theta=500.0, norm_eps=1e-4)
    assert base["vocab_size"] > tokenizer.vocab_size
    return ModelConfig(**{**base, **changes})


def random_model(config: ModelConfig, seed: int = 0) -> TransformerLM:
    """Random weights, with the RMSNorm gains moved off 1 so that a norm mapped wrongly shows."""
    torch.manual_seed(seed)
    model = TransformerLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                p.uniform_(0.2, 2.0)
    return model


def make_run(folder, model, tokenizer):
    """A run folder as `tinylm train` leaves it: checkpoint.pt (with model_config) and the tokenizer files."""
    tokenizer.save_dir(folder)
    save_checkpoint(model, None, 7, folder / "checkpoint.pt", model_config=model.config.to_dict())
    return folder


def hf_from_memory(model: TransformerLM):
    """LlamaForCausalLM from llama_config + llama_state_dict, without files (for many quick configs)."""
    cfg = {k: v for k, v in llama_config(model.config).items() if k not in ("architectures", "model_type")}
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
    hf.load_state_dict(llama_state_dict(model), strict=True)
    return hf


def logit_tolerance(model: TransformerLM, ids: torch.Tensor) -> float:
    """The module docstring's bound for |tinylm - transformers| on the logits of `ids` (fp32)."""
    ref = TransformerLM(model.config.reference()).double().eval()
    ref.load_state_dict(model.state_dict())
    final = {}
    ref.ln_final.register_forward_hook(lambda mod, inp, out: final.setdefault("h", out))
    with torch.no_grad():
        ref(ids)
        scale = float((final["h"].abs() @ ref.lm_head.weight.abs().T).max())
    c, T = model.config, ids.shape[-1]
    n = max(c.d_model, c.ffn_dim, T)
    return 2 * U32 * scale * ((2 * c.num_layers + 1) * math.sqrt(n) + 3 * c.num_layers * T)


def max_logit_difference(model, hf, ids) -> float:
    with torch.no_grad():
        return float((model(ids) - hf(ids).logits).abs().max())


# --- the weights: logits equal transformers' --------------------------------------------------------
def test_rope_row_order_is_evens_then_odds():
    assert rope_rows_to_half_split(8).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    # the same as `permute` in transformers' convert_llama_weights_to_hf.py (Meta's layout is tinylm's)
    heads, d_model = 3, 12
    model = TransformerLM(ModelConfig(vocab_size=8, context_length=4, d_model=d_model, num_layers=1, num_heads=heads))
    mapped = llama_state_dict(model)
    for name in ("q_proj", "k_proj"):
        w = model.state_dict()[f"layers.0.attn.{name}.weight"]
        hf_permute = w.view(heads, d_model // heads // 2, 2, d_model).transpose(1, 2).reshape(d_model, d_model)
        assert torch.equal(mapped[f"model.layers.0.self_attn.{name}.weight"], hf_permute)
    with pytest.raises(ConfigError, match="even"):
        rope_rows_to_half_split(5)


def test_exported_folder_loads_in_transformers_with_tinylms_logits(tmp_path, tokenizer):
    model = random_model(small_config(tokenizer))
    run = make_run(tmp_path / "run", model, tokenizer)
    out = export_llama(run, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"]
    )
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.dtype == torch.float32
    c = hf.config
    assert (c.vocab_size, c.max_position_embeddings, c.rms_norm_eps, c.tie_word_embeddings) == (320, 32, 1e-4, False)
    assert c.rope_parameters["rope_theta"] == 500.0
    assert c.eos_token_id == tokenizer.special_to_id[EOT]
    ids = torch.randint(0, tokenizer.vocab_size, (3, 32), generator=torch.Generator().manual_seed(1))
    diff, tol = max_logit_difference(model, hf, ids), logit_tolerance(model, ids)
    assert diff <= tol, (diff, tol)
    assert not torch.equal(hf.lm_head.weight, hf.model.embed_tokens.weight)


def test_a_checkpoint_file_exports_like_its_folder(tmp_path, tokenizer):
    model = random_model(small_config(tokenizer, num_layers=1))
    run = make_run(tmp_path / "run", model, tokenizer)
    a = export_llama(run, tmp_path / "a")
    b = export_llama(run / "checkpoint.pt", tmp_path / "b")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    num_heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([2, 4, 8, 16]),
    num_layers=st.integers(1, 3),
    d_ff=st.integers(4, 96),
    context_length=st.integers(1, 24),
    rope_theta=st.sampled_from([10.0, 500.0, 10_000.0, 1e6]),
    norm_eps=st.sampled_from([1e-6, 1e-5, 1e-3]),
    padding=st.integers(0, 40),
    fused=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_llama_shaped_model_has_transformers_logits(num_heads, head_dim, num_layers, d_ff, context_length, rope_theta, norm_eps, padding, fused, seed):
    """The whole kind: every shape, theta, eps and padded vocabulary maps to the same logits."""
    config = ModelConfig(
        vocab_size=257 + padding, context_length=context_length, d_model=num_heads * head_dim, num_layers=num_layers,
        num_heads=num_heads, d_ff=d_ff, rope_theta=rope_theta, norm_eps=norm_eps, fused_attention=fused,
    )
    model = random_model(config, seed)
    ids = torch.randint(0, config.vocab_size, (2, context_length), generator=torch.Generator().manual_seed(seed))
    diff, tol = max_logit_difference(model, hf_from_memory(model), ids), logit_tolerance(model, ids)
    assert diff <= tol, (diff, tol)


def _unpermuted_qk(model, state, cfg):
    for i in range(model.config.num_layers):
        for name in ("q_proj", "k_proj"):
            state[f"model.layers.{i}.self_attn.{name}.weight"] = model.state_dict()[f"layers.{i}.attn.{name}.weight"]


def _swap_gate_up(model, state, cfg):
    for i in range(model.config.num_layers):
        p = f"model.layers.{i}.mlp."
        state[p + "gate_proj.weight"], state[p + "up_proj.weight"] = state[p + "up_proj.weight"], state[p + "gate_proj.weight"]


def _tied(model, state, cfg):
    cfg["tie_word_embeddings"] = True
    state["lm_head.weight"] = state["model.embed_tokens.weight"]


MAPPING_FAULTS = {
    "q/k rows in tinylm's RoPE pair order": _unpermuted_qk,
    "gate_proj and up_proj swapped": _swap_gate_up,
    "tied embeddings": _tied,
    "HF's default rms_norm_eps": lambda model, state, cfg: cfg.update(rms_norm_eps=1e-6),
    "HF's default rope_theta": lambda model, state, cfg: cfg.update(rope_theta=10_000.0, rope_parameters={"rope_type": "default", "rope_theta": 10_000.0}),
}


@pytest.mark.parametrize("fault", MAPPING_FAULTS)
def test_the_tolerance_catches_every_mapping_fault(fault, tokenizer):
    """The comparison can fail: each plausible mistake in the mapping is far outside the tolerance."""
    model = random_model(small_config(tokenizer, norm_eps=0.05))
    cfg = {k: v for k, v in llama_config(model.config).items() if k not in ("architectures", "model_type")}
    state = llama_state_dict(model)
    MAPPING_FAULTS[fault](model, state, cfg)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
    hf.load_state_dict(state, strict=True)
    ids = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(3))
    assert max_logit_difference(model, hf, ids) > 10 * logit_tolerance(model, ids)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_export_holds_the_rounded_weights(tmp_path, tokenizer, dtype):
    from click.testing import CliRunner

    from tinylm.cli import main

    model = random_model(small_config(tokenizer, num_layers=1))
    run = make_run(tmp_path / "run", model, tokenizer)
    r = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "hf"), "--dtype", dtype])
    assert r.exit_code == 0, r.output
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype="auto")
    assert hf.dtype == getattr(torch, dtype)
    expected = llama_state_dict(model, getattr(torch, dtype))
    assert hf.state_dict().keys() == expected.keys()
    for name, value in hf.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_cli_choices_are_the_librarys():
    from tinylm import export as library
    from tinylm.cli import export_command

    assert export_command.FORMATS == library.FORMATS and export_command.DTYPES == tuple(library.DTYPES)
    with pytest.raises(ConfigError, match="--format llama only"):
        export("run", "out", format="safetensors", dtype="bfloat16")


# --- the tokenizer ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_tokenizer(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("tok")
    model = random_model(small_config(tokenizer, num_layers=1, d_model=16))
    out = export_llama(make_run(folder / "run", model, tokenizer), folder / "hf")
    return out, transformers.AutoTokenizer.from_pretrained(out)


@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_autotokenizer_gives_tinylms_ids_on_every_fixture(name, fixtures, tokenizer, exported_tokenizer):
    import tokenizers

    out, hf = exported_tokenizer
    raw = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
    plain = (fixtures / name).read_text(encoding="utf-8")
    with_specials = f"{EOT}{plain[:500]}<|pad|>{plain[500:]}{EOT}x{EOT}"
    for text in (plain, with_specials):
        ids = tokenizer.encode(text)
        assert hf(text)["input_ids"] == ids
        assert raw.encode(text).ids == ids
        assert hf.decode(ids) == text == tokenizer.decode(ids)


def test_autotokenizer_knows_the_special_tokens(tokenizer, exported_tokenizer):
    _, hf = exported_tokenizer
    assert hf.eos_token == EOT and hf.eos_token_id == tokenizer.special_to_id[EOT]
    assert hf.convert_tokens_to_ids("<|pad|>") == tokenizer.special_to_id["<|pad|>"]
    assert len(hf) == tokenizer.vocab_size
    assert hf.decode(tokenizer.encode(f"a{EOT}b"), skip_special_tokens=True) == "ab"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), st.sampled_from(SPECIALS + [" ", "\n\n", "  x", "'s", "'ll"])), max_size=8))
def test_autotokenizer_ids_equal_tinylms_on_any_text(tokenizer, exported_tokenizer, parts):
    _, hf = exported_tokenizer
    text = "".join(parts)
    ids = tokenizer.encode(text)
    assert hf(text)["input_ids"] == ids
    assert hf.decode(ids) == text


OVERLAPPING = [EOT, "<|end", "text|><|end"]


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory, fixtures):
    """tinylm and AutoTokenizer for special tokens that overlap each other (longest leftmost match wins)."""
    from tinylm.export import hf_tokenizer_files

    vocab, merges = train_bpe(fixtures / "corpus.en", 300, OVERLAPPING)
    tok = Tokenizer(vocab, merges, OVERLAPPING)
    folder = tmp_path_factory.mktemp("overlap")
    for name, data in hf_tokenizer_files(tok, 64).items():
        (folder / name).write_bytes(data)
    return tok, transformers.AutoTokenizer.from_pretrained(folder)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(OVERLAPPING + ["<|", "text|>", "of", "<|endoftext", " ", "a"]), max_size=10))
def test_overlapping_special_tokens_split_like_tinylm(overlapping, parts):
    tok, hf = overlapping
    text = "".join(parts)
    assert hf(text)["input_ids"] == tok.encode(text)


# --- greedy generation ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fixtures, tokenizer):
    """A really trained run (40 steps) whose padded ids (300..319) the model learned never to predict."""
    import numpy as np

    from tinylm.training.config import TrainConfig
    from tinylm.training.loop import train

    folder = tmp_path_factory.mktemp("trained")
    tok_dir = tokenizer.save_dir(folder / "tok")
    np.save(folder / "train.npy", tokenizer.encode_to_numpy((fixtures / "tinystories_sample.txt").read_text() * 4))
    config = TrainConfig.from_dict({
        "model": small_config(tokenizer, context_length=48).to_dict(),
        "data": {"train": str(folder / "train.npy")},
        "tokenizer": {"dir": str(tok_dir)},
        "optim": {"lr_max": 1e-2, "lr_min": 1e-3, "warmup_iters": 5},
        "train": {"batch_size": 8, "max_steps": 40, "eval_interval": 1000, "log_interval": 1000, "checkpoint_interval": 1000,
                  "progress": False, "out_dir": str(folder / "run")},
    })
    train(config)
    return folder / "run"


def test_greedy_generate_equals_tinylm_generate(tmp_path, trained_run):
    from click.testing import CliRunner

    from tinylm.cli import main
    from tinylm.generate import load_run

    prompt, new = "Once upon a time, there was a", 16
    r = CliRunner().invoke(main, ["generate", "--checkpoint", str(trained_run), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", str(new)])
    assert r.exit_code == 0, r.output
    tinylm_text = r.stdout.removesuffix("\n")

    r = CliRunner().invoke(main, ["export", str(trained_run), "--out", str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    prompt_ids = hf_tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = hf.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=new, do_sample=False)
    hf_text = hf_tok.decode(out[0], skip_special_tokens=True)
    assert hf_text == tinylm_text

    # The comparison is decisive: at every step tinylm's top choice wins by more than the logit tolerance.
    model, _ = load_run(trained_run)
    seq = out[:, : prompt_ids.shape[1] + new - 1]
    with torch.no_grad():
        top2 = model(seq)[0, prompt_ids.shape[1] - 1 :].topk(2).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 2 * logit_tolerance(model.eval(), seq)


# --- models Llama cannot express --------------------------------------------------------------------
@pytest.mark.parametrize("field,value", ABLATIONS, ids=[f"{f}={v}" for f, v in ABLATIONS])
def test_an_ablation_is_one_error_naming_the_setting(tmp_path, tokenizer, field, value):
    from click.testing import CliRunner

    from tinylm.cli import main

    model = random_model(small_config(tokenizer, num_layers=1, **{field: value}))
    run = make_run(tmp_path / "run", model, tokenizer)
    with pytest.raises(ConfigError, match=f"model.{field}='{value}'"):
        export_llama(run, tmp_path / "hf")
    r = CliRunner().invoke(main, ["export", str(run), "--out", str(tmp_path / "hf")])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: cannot export as Llama: model.{field}='{value}'")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()


def test_a_missing_optional_package_is_one_error_and_no_folder(tmp_path, tokenizer, monkeypatch):
    import sys

    run = make_run(tmp_path / "run", random_model(small_config(tokenizer, num_layers=1)), tokenizer)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"optional package 'safetensors': pip install 'tinylm\[hf\]'"):
        export_llama(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_an_existing_export_is_replaced_whole(tmp_path, tokenizer):
    run = make_run(tmp_path / "run", random_model(small_config(tokenizer, num_layers=1)), tokenizer)
    out = export_llama(run, tmp_path / "hf")
    make_run(run, random_model(small_config(tokenizer, num_layers=1), seed=5), tokenizer)
    before = (out / "model.safetensors").read_bytes()
    export_llama(run, out)
    assert (out / "model.safetensors").read_bytes() != before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


# --- tinylm weights as safetensors ------------------------------------------------------------------
@pytest.mark.parametrize("changes", [{}] + [{f: v} for f, v in ABLATIONS], ids=["default"] + [f"{f}={v}" for f, v in ABLATIONS])
def test_safetensors_weights_round_trip_exactly_without_pickle(tmp_path, tokenizer, monkeypatch, changes):
    model = random_model(small_config(tokenizer, num_layers=1, **changes))
    run = make_run(tmp_path / "run", model, tokenizer)
    out = export(run, tmp_path / "st", format="safetensors")
    assert sorted(p.name for p in out.iterdir()) == ["merges.txt", "model.safetensors", "special_tokens.json", "vocab.json"]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("loading safetensors weights must not unpickle anything")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = load_safetensors(out)
    assert loaded.config == model.config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert Tokenizer.from_dir(out).encode("Once upon a time") == tokenizer.encode("Once upon a time")


def test_safetensors_file_is_a_json_header_and_raw_tensors(tmp_path, tokenizer):
    model = random_model(small_config(tokenizer, num_layers=1))
    path = save_safetensors(model, tmp_path / "w" / "model.safetensors")
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert json.loads(header["__metadata__"]["model_config"]) == model.config.to_dict()
    assert header["lm_head.weight"] == {"dtype": "F32", "shape": [320, 32], "data_offsets": header["lm_head.weight"]["data_offsets"]}
    assert len(data) == 8 + header_len + sum(p.numel() * 4 for p in model.state_dict().values())


def test_bad_safetensors_files_are_one_clear_error(tmp_path, tokenizer):
    model = random_model(small_config(tokenizer, num_layers=1))
    path = save_safetensors(model, tmp_path / "model.safetensors")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a safetensors file"):
        load_safetensors(truncated)
    hf_folder = export_llama(make_run(tmp_path / "run", model, tokenizer), tmp_path / "hf")
    with pytest.raises(CheckpointError, match="not a tinylm safetensors file"):
        load_safetensors(hf_folder)
    with pytest.raises(CheckpointError, match="no safetensors weights"):
        load_safetensors(tmp_path / "nowhere")
