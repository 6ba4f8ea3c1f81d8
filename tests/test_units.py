"""One memory-size parser for every command: decimal GB, binary GiB and shell-style G."""

import pytest

from tinylm.errors import ConfigError
from tinylm.units import parse_memory


@pytest.mark.parametrize(
    "text, expected",
    [("80GB", 80 * 10**9), ("24GiB", 24 * 2**30), ("4G", 4 * 2**30), ("500M", 500 * 2**20), ("64K", 65536), ("1.5 mb", 1_500_000), ("4096", 4096)],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "0", "4X", "", "-1G"])
def test_parse_memory_rejects_nonsense(text):
    with pytest.raises(ConfigError):
        parse_memory(text)


def test_peak_memory_is_this_process_own_not_the_parents():
    """A small child of a big process reports its own peak (Linux carries ru_maxrss over fork and exec)."""
    import subprocess
    import sys

    import numpy as np

    from tinylm.peak_memory import peak_rss_mb

    big = np.ones(200 * 2**20 // 8)  # this process: +200 MB resident
    assert peak_rss_mb() > 200
    code = "from tinylm.peak_memory import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 150, child  # an interpreter and tinylm: tens of MB, not the parent's 200+
    del big
