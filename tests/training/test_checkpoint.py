"""Checkpoints: round trip, atomic replacement, safe loading, clear errors."""

import io
import os
import random

import numpy as np
import pytest
import torch

from tinylm import ModelConfig, TransformerLM
from tinylm.errors import CheckpointError
from tinylm.training import AdamW, load_checkpoint, save_checkpoint
from tinylm.io import remove_stale_temps_in
from tinylm.training import checkpoint as ckpt_mod
from tinylm.training.checkpoint import capture_rng_state, load_model, read_checkpoint, restore_rng_state

CFG = ModelConfig(vocab_size=32, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32)


def _trained(seed=0):
    torch.manual_seed(seed)
    model = TransformerLM(CFG)
    opt = AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(32, (2, 8))
    model(ids).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_model_optimizer_iteration(tmp_path):
    model, opt = _trained()
    path = tmp_path / "ck.pt"
    save_checkpoint(model, opt, 7, path, model_config=CFG.to_dict())
    model2, opt2 = _trained(seed=1)
    assert load_checkpoint(path, model2, opt2) == 7
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"]) and s1[i]["step"] == s2[i]["step"] for i in s1)
    rebuilt, payload = load_model(path)
    assert payload["iteration"] == 7 and torch.equal(rebuilt.lm_head.weight, model.lm_head.weight)


def test_file_objects_work():
    model, opt = _trained()
    buf = io.BytesIO()
    save_checkpoint(model, opt, 3, buf)
    buf.seek(0)
    assert load_checkpoint(buf, _trained(1)[0], _trained(1)[1]) == 3


def test_failure_mid_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = _trained()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(model, opt, 1, path)
    before = path.read_bytes()

    def dying_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(Exception, match="No space left"):
        save_checkpoint(model, opt, 2, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path, _trained(1)[0]) == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # the temporary file is gone


def test_kill_mid_write_leftover_is_cleaned_and_ignored(tmp_path):
    model, opt = _trained()
    save_checkpoint(model, opt, 1, tmp_path / "checkpoint.pt")
    (tmp_path / ".tmp-checkpoint.pt.abc123").write_bytes(b"partial")  # what kill -9 leaves
    assert load_checkpoint(tmp_path, _trained(1)[0]) == 1  # a folder means its checkpoint.pt
    remove_stale_temps_in(tmp_path)
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    model, opt = _trained()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(model, opt, 1, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path, model)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path, model)


def test_newer_format_is_refused(tmp_path):
    model, _ = _trained()
    path = tmp_path / "checkpoint.pt"
    torch.save({"format_version": ckpt_mod.FORMAT_VERSION + 1, "iteration": 0, "model": model.state_dict()}, path)
    with pytest.raises(CheckpointError, match="newer than this tinylm"):
        load_checkpoint(path, model)


def test_checkpoint_from_another_config_is_refused(tmp_path):
    model, opt = _trained()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(model, opt, 1, path, model_config=CFG.to_dict())
    other = TransformerLM(CFG.replace(d_model=32, d_ff=64))
    with pytest.raises(CheckpointError, match="d_model=16 in checkpoint vs 32"):
        load_checkpoint(path, other)
    save_checkpoint(model, opt, 1, path)  # no config stored: the state dict shapes still catch it
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(path, other)
    fast = TransformerLM(CFG.replace(fused_attention=not CFG.fused_attention))
    save_checkpoint(model, opt, 1, path, model_config=CFG.to_dict())
    assert load_checkpoint(path, fast) == 1  # speed switches are not a different model


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling calls os.mkdir(marker): the folder appearing proves code ran
        return (os.mkdir, (str(self.marker),))


def test_loading_never_runs_pickled_code(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    torch.save({"format_version": 1, "iteration": 0, "model": {}, "x": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file really is a payload: an unsafe load runs it
    assert marker.exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path)


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    model, opt = _trained()
    save_checkpoint(model, opt, 0, tmp_path / "c.pt", rng=state)
    restore_rng_state(read_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
