"""tests/corpus need the corpus extra (pyarrow, zstandard), which the test extra installs."""

import pytest


@pytest.fixture(autouse=True)
def _optional_packages():
    pytest.importorskip("pyarrow")
    pytest.importorskip("zstandard")
