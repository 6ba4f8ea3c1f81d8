"""ModelConfig: defaults, validation with readable errors, and the dict round trip checkpoints use."""

import json

import pytest

from tinylm.errors import ConfigError
from tinylm.model.config import ModelConfig, default_d_ff


def test_defaults_are_the_tinystories_model():
    c = ModelConfig()
    assert (c.vocab_size, c.context_length, c.d_model, c.num_layers, c.num_heads) == (10_000, 256, 512, 4, 16)
    assert c.ffn_dim == 1344 and c.rope_theta == 10_000.0
    assert (c.norm, c.position, c.ffn) == ("pre", "rope", "swiglu")


@pytest.mark.parametrize("d_model, expected", [(512, 1344), (768, 2048), (48, 128), (96, 256), (16, 64)])
def test_default_d_ff_is_eight_thirds_rounded_to_64(d_model, expected):
    assert default_d_ff(d_model) == expected
    assert default_d_ff(d_model, "silu") == 4 * d_model


def test_dict_round_trip_through_json():
    c = ModelConfig(vocab_size=300, d_model=64, num_heads=4, norm="post", ffn="silu", fused_attention=False)
    data = json.loads(json.dumps(c.to_dict()))
    assert ModelConfig.from_dict(data) == c
    assert ModelConfig.from_dict({"rope_theta": 500}).rope_theta == 500.0  # TOML ints are fine


def test_unknown_keys_are_an_error():
    with pytest.raises(ConfigError, match="unknown model config key.*n_layers"):
        ModelConfig.from_dict({"n_layers": 3})
    with pytest.raises(ConfigError):
        ModelConfig.from_dict([("d_model", 3)])


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(d_model=100, num_heads=16), "divisible by num_heads"),
        (dict(d_model=48, num_heads=16), "must be even"),  # head dim 3 cannot be rotated in pairs
        (dict(vocab_size=0), "vocab_size must be a positive integer"),
        (dict(num_layers=2.5), "num_layers"),
        (dict(context_length=True), "context_length"),
        (dict(d_ff=-1), "d_ff"),
        (dict(rope_theta=0), "rope_theta"),
        (dict(norm="layer"), "norm must be one of pre, post, none"),
        (dict(position="alibi"), "position"),
        (dict(ffn="geglu"), "ffn"),
        (dict(autocast="fp8"), "autocast"),
        (dict(fused_attention="yes"), "fused_attention"),
    ],
)
def test_impossible_settings_raise_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**changes)


def test_odd_head_dim_is_fine_without_rope():
    assert ModelConfig(d_model=48, num_heads=16, position="none").head_dim == 3


def test_reference_turns_off_every_fast_path():
    c = ModelConfig(compile=True, autocast="bf16").reference()
    assert (c.fused_attention, c.autocast, c.compile) == (False, "none", False)
