"""Every row of the bad-input matrix: one `error: ...` line, exit status 2, no traceback, and
nothing written under the output name (or what the row's own check asserts). Then the fault rows,
whose outcome is not exit 2: Ctrl-C and a full disk."""

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("matrix", Path(__file__).parent / "matrix.py")
matrix = importlib.util.module_from_spec(_spec)
sys.modules["matrix"] = matrix  # dataclasses look their module up there
_spec.loader.exec_module(matrix)


@pytest.mark.parametrize("case", matrix.CASES, ids=[c.name for c in matrix.CASES])
def test_bad_input_gives_one_clear_error(case, tmp_path):
    try:
        r = matrix.run_case(case, tmp_path)
    except matrix.Skip as skip:
        pytest.skip(str(skip))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for word in case.expect:
        assert word in lines[0]
    if case.check is None:
        assert not (tmp_path / "out" / "vocab.json").exists() and not (tmp_path / "o.npy").exists()
        assert not (tmp_path / "out").exists()  # not even an empty output folder
    else:
        case.check(tmp_path)


@pytest.mark.parametrize("fault", matrix.FAULTS, ids=[f.name for f in matrix.FAULTS])
def test_fault(fault, tmp_path):
    try:
        matrix.run_fault(fault, tmp_path)
    except matrix.Skip as skip:
        pytest.skip(str(skip))


def test_an_unwrapped_write_on_a_full_disk_is_one_error_line(monkeypatch):
    """The CLI's safety net: an ENOSPC no library code turned into OutputError (a metrics line, a plot)."""
    import errno

    from click.testing import CliRunner

    import tinylm.training.loop
    from tinylm.cli import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl")

    monkeypatch.setattr(tinylm.training.loop, "train", full)
    r = CliRunner().invoke(main, ["train", "--train-data", "t.npy", "--max-steps", "1"])
    assert r.exit_code == 2 and r.stderr == "error: cannot write runs/x/metrics.jsonl: No space left on device\n"
