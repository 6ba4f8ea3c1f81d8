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
