"""Named recipes (`--recipe` on train and quickstart) and what `tinylm export` does with the new switches."""

import pytest
import torch
from click.testing import CliRunner

from tinylm.cli import main
from tinylm.errors import ConfigError
from tinylm.model import ModelConfig, TransformerLM
from tinylm.quickstart import QuickstartConfig
from tinylm.recipes import RECIPES, config_overrides, model_overrides, quickstart_defaults, recipe_overrides
from tinylm.training.config import TrainConfig


def test_cs336_is_the_old_default_unchanged_and_tinylm_the_quick_starts(make_config):
    assert recipe_overrides("cs336") == {}
    base = make_config()
    assert base.with_overrides(recipe_overrides("cs336")) == base  # `train` without --recipe
    assert QuickstartConfig().recipe == "tinylm"
    assert QuickstartConfig().model_config() == QuickstartConfig(recipe="tinylm").model_config()
    old = QuickstartConfig(recipe="cs336")  # the quick start before recipes: lr 1e-2, decay 0.1, warm-up 5%
    assert (old.lr, old.weight_decay, old.warmup_fraction, old.batch_size) == (1e-2, 0.1, 0.05, 32)
    assert old.optim_overrides() == {} and old.model_config() == QuickstartConfig(recipe="cs336", lr=0.5).model_config()


def test_nanogpt_is_the_gpt2_baseline():
    c = QuickstartConfig(recipe="nanogpt").model_config()
    assert (c.norm_type, c.ffn, c.position, c.tie_embeddings, c.qk_norm) == ("layer", "gelu", "learned", True, False)
    assert c.ffn_dim == 4 * c.d_model
    assert QuickstartConfig(recipe="nanogpt").optim_overrides() == {"optim.name": "adamw"}


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_builds_a_valid_config_and_model(make_config, name):
    config = make_config(**config_overrides(name))
    TransformerLM(config.model)
    QuickstartConfig(recipe=name).validate()  # its quickstart.* keys name fields the quick start tunes
    assert model_overrides(name) == {k[len("model."):]: v for k, v in RECIPES[name].items() if k.startswith("model.")}


def test_unknown_recipe_is_one_config_error():
    with pytest.raises(ConfigError, match="unknown recipe 'gpt5'.*cs336"):
        recipe_overrides("gpt5")
    with pytest.raises(ConfigError, match="unknown recipe"):
        QuickstartConfig(recipe="gpt5").validate()
    r = CliRunner().invoke(main, ["quickstart", "--recipe", "gpt5"])
    assert r.exit_code == 2 and "gpt5" in r.output + (r.stderr or "")


def test_train_flag_applies_the_recipe_before_the_users_settings(token_files, tmp_path):
    from tinylm.cli.training_commands import _load

    train, _ = token_files
    flags = {"recipe": "tinylm", "train_data": str(train), "max_steps": 3, "lr": 5e-3}
    config = _load(None, ["optim.decay_fraction=0.2", "optim.embedding_lr=0.05"], flags)
    assert config.model.zero_init_residual is True and config.optim.name == "muon"  # from the recipe
    assert config.optim.decay_fraction == 0.2 and config.optim.embedding_lr == 0.05  # --set wins over the recipe
    assert config.optim.lr_max == 5e-3  # recipes never set AdamW's rate (the quick start's is a quickstart.* key)
    assert config.optim.weight_decay == 0.1 and config.train.batch_size == 32
    assert _load(None, [], {"train_data": str(train), "max_steps": 3}) == _load(None, [], {"recipe": "cs336", "train_data": str(train), "max_steps": 3})


def test_quickstart_takes_the_recipes_tuned_fields_only_where_the_user_gave_none(monkeypatch, token_files):
    from tinylm.cli.training_commands import _load

    monkeypatch.setitem(RECIPES, "tuned", {"optim.name": "muon", "quickstart.lr": 0.03, "quickstart.batch_size": 16})
    assert quickstart_defaults("tuned") == {"lr": 0.03, "batch_size": 16}
    assert config_overrides("tuned") == {"optim.name": "muon"}
    c = QuickstartConfig(recipe="tuned")
    assert (c.lr, c.batch_size) == (0.03, 16)
    c = QuickstartConfig(recipe="tuned", lr=1e-3, batch_size=8)  # the user's values win
    assert (c.lr, c.batch_size) == (1e-3, 8)
    assert (QuickstartConfig(recipe="cs336").lr, QuickstartConfig(recipe="cs336").batch_size) == (1e-2, 32)  # the fallbacks
    # `train --recipe` takes the model/optim settings only (the quick start's fields are not TrainConfig's)
    train, _ = token_files
    config = _load(None, [], {"recipe": "tuned", "train_data": str(train), "max_steps": 3})
    assert config.optim.name == "muon" and config.train.batch_size == 32 and config.optim.lr_max == 1e-3
    monkeypatch.setitem(RECIPES, "typo", {"quickstart.bach_size": 16})
    with pytest.raises(ConfigError, match="quickstart.bach_size"):
        QuickstartConfig(recipe="typo").validate()


def test_train_cli_trains_with_a_recipe(token_files, tmp_path):
    train, val = token_files
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--recipe", "nanogpt", "--train-data", str(train), "--val-data", str(val),
                                  "--max-steps", "2", "--batch-size", "2", "--out", str(out), "--no-progress",
                                  "--set", "model.vocab_size=64", "--set", "model.context_length=16", "--set", "model.d_model=32",
                                  "--set", "model.num_layers=1", "--set", "model.num_heads=4", "--set", "train.eval_windows=2"])
    assert r.exit_code == 0, r.output
    saved = TrainConfig.from_dict(__import__("tomllib").loads((out / "config.toml").read_text()))
    assert saved.model.position == "learned" and saved.model.tie_embeddings


# --- export -------------------------------------------------------------------------------------------
SMALL = dict(vocab_size=300, context_length=16, d_model=32, num_layers=1, num_heads=4)


@pytest.mark.parametrize("field,value", [("qk_norm", True), ("ffn", "relu2"), ("ffn", "gelu"),
                                         ("position", "learned"), ("norm_type", "layer"), ("logit_softcap", 30.0),
                                         ("embed_norm", True)])
def test_llama_export_refuses_what_llama_cannot_express(field, value):
    from tinylm.export import check_llama_compatible, llama_state_dict

    config = ModelConfig(**SMALL, **{field: value})
    with pytest.raises(ConfigError, match=f"cannot export as Llama: model.{field}={value!r}"):
        check_llama_compatible(config)
    with pytest.raises(ConfigError, match=field):
        llama_state_dict(TransformerLM(config))


def test_tied_embeddings_export_as_tie_word_embeddings_with_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from tinylm.export import llama_config, llama_state_dict

    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(**SMALL, tie_embeddings=True)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name.endswith("ln_final.weight"):
                p.uniform_(0.2, 2.0)
    cfg = llama_config(model.config)
    assert cfg["tie_word_embeddings"] is True
    state = llama_state_dict(model)
    assert "lm_head.weight" not in state
    hf_cfg = transformers.LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected
    hf.tie_weights()
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    # float32, one layer of width 32: rounding of order 1e-6 relative to the largest logit; a head that
    # is not the embedding matrix is off by the logits' own size
    scale = float(ours.abs().max())
    torch.testing.assert_close(theirs, ours, atol=1e-5 * max(1.0, scale), rtol=0)
