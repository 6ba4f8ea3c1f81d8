"""Accounting against the model itself (parameters, PyTorch's FLOP counter, autograd's saved
tensors) and against known figures for GPT-2 XL; plus the `tinylm accounting` command."""

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from tinylm.cli.model_commands import accounting as accounting_command
from tinylm.errors import ConfigError
from tinylm.model import ModelConfig, TransformerLM
from tinylm.model import accounting as acc

SMALL = dict(vocab_size=97, context_length=24, d_model=32, num_layers=2, num_heads=4)
VARIANTS = [dict(), dict(ffn="silu"), dict(norm="none"), dict(norm="post", position="none"), dict(d_ff=40),
            dict(embed_norm=True), dict(embed_norm=True, norm_type="layer")]


@pytest.mark.parametrize("changes", VARIANTS, ids=str)
def test_param_count_matches_model_parameters(changes):
    config = ModelConfig(**SMALL, **changes)
    model = TransformerLM(config)
    assert acc.count_params(config) == sum(p.numel() for p in model.parameters())
    # by component, too: group the real parameters by name
    by_group = {}
    for name, p in model.named_parameters():
        group = ("embedding" if name.startswith("token_") else "output" if name.startswith("lm_head")
                 else "attention" if ".attn." in name else "feed-forward" if ".ffn." in name else "norm")
        by_group[group] = by_group.get(group, 0) + p.numel()
    counted = {}
    for row in acc.param_rows(config):
        counted[row.group] = counted.get(row.group, 0) + row.value
    assert counted == by_group


@pytest.mark.parametrize("changes", VARIANTS[:2], ids=str)
def test_flops_match_pytorch_flop_counter_on_reference_path(changes):
    config = ModelConfig(**SMALL, **changes).reference()
    model = TransformerLM(config)
    ids = torch.randint(0, 97, (1, 24))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(ids)
    assert acc.forward_flops(config) == counter.get_total_flops()
    assert acc.forward_flops(config, 12) < acc.forward_flops(config)


def test_gpt2_xl_known_figures():
    xl = acc.preset("gpt2-xl")
    assert acc.count_params(xl) == 2_127_057_600
    assert acc.forward_flops(xl) == pytest.approx(4.5e12, rel=0.01)
    shares = acc.flop_shares(xl)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["feed-forward"] > shares["attention"] > shares["output"]
    # at 16,384 tokens the T² attention terms dominate
    long = acc.flop_shares(xl, 16_384)
    assert long["attention"] > 0.6 > shares["attention"]
    [(t, flops, _)] = acc.context_scaling(xl, [16_384])
    assert t == 16_384 and flops == acc.forward_flops(xl, 16_384) > 30 * acc.forward_flops(xl)


def test_presets_are_the_published_shapes():
    shapes = {n: (c.num_layers, c.d_model, c.num_heads, c.ffn_dim) for n, c in acc.PRESETS.items()}
    assert shapes["gpt2-small"] == (12, 768, 12, 3072) and shapes["gpt2-medium"] == (24, 1024, 16, 4096)
    assert shapes["gpt2-large"] == (36, 1280, 20, 5120) and shapes["gpt2-xl"] == (48, 1600, 25, 6400)
    # by hand: 2·50257·768 + 12·(4·768² + 3·768·3072 + 2·768) + 768 (untied, SwiGLU at 4·d, so > GPT-2's 124M)
    assert acc.count_params(acc.preset("gpt2-small")) == 190_460_160
    ts = acc.preset("tinystories")
    assert (ts.vocab_size, ts.context_length, ts.d_model, ts.num_layers, ts.num_heads, ts.ffn_dim, ts.rope_theta) == (
        10_000, 256, 512, 4, 16, 1_344, 10_000.0)
    ts.d_model = 1  # a copy: the preset itself is untouched
    assert acc.preset("tinystories").d_model == 512
    with pytest.raises(ConfigError, match="gpt2-small"):
        acc.preset("gpt3")


def test_training_memory_is_linear_in_batch_and_fits_the_budget():
    xl = acc.preset("gpt2-xl")
    mem = acc.training_memory(xl)
    assert mem.fixed == 16 * 2_127_057_600  # params + grads + AdamW m, v in float32
    assert mem.total(3) - mem.total(2) == mem.per_sequence
    budget = acc.parse_memory("80GB")
    n = mem.max_batch(budget)
    assert mem.total(n) <= budget < mem.total(n + 1)
    assert acc.training_memory(acc.preset("tinystories")).max_batch(acc.parse_memory("1MB")) == 0


def test_activation_estimate_is_close_to_what_autograd_saves():
    """The hand count is an estimate; it should be within a small factor of the real saved tensors."""
    config = ModelConfig(**SMALL).reference()
    model = TransformerLM(config)
    ids = torch.randint(0, 97, (1, 24))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
    measured = sum(v for k, v in saved.items() if k not in params)
    assert 0.8 < measured / acc.training_memory(config).per_sequence < 1.5


@pytest.mark.parametrize("text, expected", [("80GB", 80 * 10**9), ("24GiB", 24 * 2**30), ("1.5 mb", 1_500_000),
                                            ("4096", 4096)])
def test_parse_memory(text, expected):
    assert acc.parse_memory(text) == expected


def test_parse_memory_rejects_nonsense():
    with pytest.raises(ConfigError, match="80GB"):
        acc.parse_memory("lots")


def test_cli_prints_tables_for_a_preset():
    result = CliRunner().invoke(accounting_command, ["--preset", "gpt2-xl", "--context-length", "16384"])
    assert result.exit_code == 0, result.output
    for text in ("Parameters", "2,127,057,600", "L·2·T²·d", "16,384", "largest batch that fits in 80GB"):
        assert text in result.output


def test_cli_flags_override_and_json_output():
    result = CliRunner().invoke(accounting_command, ["--d-model", "256", "--num-heads", "8", "--ffn", "silu",
                                                     "--memory", "24GiB", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    config = ModelConfig.from_dict(data["config"])
    assert config.d_model == 256 and config.ffn_dim == 1024  # --ffn silu without --d-ff: 4·d_model
    assert data["parameters"]["total"] == acc.count_params(config)
    assert data["memory"]["memory_bytes"] == 24 * 2**30


def test_cli_bad_shape_is_a_config_error():
    result = CliRunner().invoke(accounting_command, ["--d-model", "100", "--num-heads", "16"])
    assert isinstance(result.exception, ConfigError)
