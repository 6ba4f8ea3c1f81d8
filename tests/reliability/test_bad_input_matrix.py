"""Every row of the bad-input matrix: one `error: ...` line, exit status 2, no traceback, and
nothing written under the output name."""

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
    r = matrix.run_case(case, tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for word in case.expect:
        assert word in lines[0]
    assert not (tmp_path / "out" / "vocab.json").exists() and not (tmp_path / "o.npy").exists()
