"""tinylm.io: the one atomic writer, its one temp-name scheme, and cleaning what a kill left.

The kind of fault: a write killed between creating its temporary and renaming it leaves a file that
some later run must recognise as its own and delete, and nothing else. Every writer of the house is
killed mid-write here (os.replace made to end the process, as kill -9 would at that instant); the
target must keep its previous contents, and the rerun (or the run folder's preparation) must leave
no temporary behind.
"""

from __future__ import annotations

import errno
import os
import string
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.errors import OutputError
from tinylm.io import (
    TEMP_PREFIX,
    atomic_write,
    atomic_write_bytes,
    atomic_write_files,
    is_temp_of,
    new_temp,
    remove_stale_temps_in,
    remove_stale_temps_of,
)

FIXTURES = Path(__file__).parent / "fixtures"
posix_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a writer mid-write")


def _killed_mid_write(write) -> int:
    """Run write() in a forked child whose os.replace ends the process: the state kill -9 leaves."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.replace = lambda *a, **k: os._exit(9)
            write()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _write_bytes(target: Path, data: bytes):
    return lambda: atomic_write_bytes(target, data)


def _write_files(target: Path, data: bytes):
    return lambda: atomic_write_files({target: data, target.with_name("other.json"): data})


def _write_stream(target: Path, data: bytes):
    def write():
        with atomic_write(target) as f:
            for i in range(0, len(data), 3):
                f.write(data[i : i + 3])

    return write


def _write_checkpoint(target: Path, data: bytes):
    import torch

    from tinylm.training.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 2)
    return lambda: save_checkpoint(model, None, len(data), target)


def _write_token_array(target: Path, data: bytes):
    from tinylm import Tokenizer
    from tinylm.tokenizer.token_arrays import encode_file

    src = target.with_name("src.txt")
    src.write_bytes(data or b"x")
    tokenizer = Tokenizer({i: bytes([i]) for i in range(256)}, [])
    return lambda: encode_file(tokenizer, src, target, num_workers=1)


WRITERS = [_write_bytes, _write_files, _write_stream, _write_checkpoint, _write_token_array]


@posix_only
@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_a_kill_mid_write_keeps_the_old_file_and_a_rerun_leaves_no_temporary(tmp_path, writer):
    target = tmp_path / "out.bin"
    writer(target, b"first version")()
    before = target.read_bytes()
    assert _killed_mid_write(writer(target, b"second, longer version")) == 9
    assert target.read_bytes() == before  # the kill left the previous complete file
    left = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert left and all(is_temp_of(p, target) or is_temp_of(p, target.with_name("other.json")) for p in left)
    writer(target, b"second, longer version")()  # the rerun
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


@posix_only
def test_run_folder_preparation_removes_every_temporary_a_kill_left(tmp_path):
    from tinylm.training.config import TrainConfig
    from tinylm.training.run_dir import RunDir

    run = RunDir(tmp_path / "run")
    run.prepare()
    assert _killed_mid_write(lambda: run.write_config(TrainConfig())) == 9
    assert _killed_mid_write(_write_stream(run.checkpoint, b"half a checkpoint")) == 9
    assert len(list(run.path.iterdir())) == 2
    run.prepare()  # what `tinylm train --resume` does first
    assert list(run.path.iterdir()) == []


def test_failed_stream_keeps_previous_contents_and_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_bytes(target, b"old")
    with pytest.raises(ValueError):
        with atomic_write(target) as f:
            f.write(b"new, half")
            raise ValueError("the producer failed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.txt"]


def test_full_disk_is_one_output_error_naming_the_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_write_bytes(target, b"old")
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*checkpoint.pt: No space left on device; the previous checkpoint there is unchanged"):
        with atomic_write(target, "checkpoint") as f:
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OutputError, match=r"cannot write .*b.txt: No space left on device$"):
        with atomic_write(tmp_path / "b.txt") as f:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("zip writer failed")  # how torch.save reports it
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]


def test_unwritable_folder_is_one_output_error(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_bytes(b"x")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_bytes(blocker / "sub" / "a.txt", b"data")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_files({blocker / "a.txt": b"data"})


# Names as a file system takes them: no "/" and no NUL, not "." or "..".
names = st.text(alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda n: n not in (".", "..") and len(n.encode("utf-8", "surrogatepass")) < 120
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=names, other=names)
def test_stale_temps_of_one_target_never_touch_another(tmp_path_factory, target, other):
    """Whatever the two names (one a prefix of the other, holding dots, '*' or '['), cleaning one
    target's temporaries removes exactly those, and the temp name tells whose it is."""
    if other == target:
        return
    folder = tmp_path_factory.mktemp("names")
    mine, theirs = folder / target, folder / other
    made = {new_temp(mine)[1]: mine for _ in range(2)} | {new_temp(theirs)[1]: theirs for _ in range(2)}
    for tmp, owner in made.items():
        assert is_temp_of(tmp, owner) and not is_temp_of(tmp, mine if owner == theirs else theirs)
    remove_stale_temps_of(mine)
    assert {p for p in folder.iterdir()} == {tmp for tmp, owner in made.items() if owner == theirs}
    remove_stale_temps_in(folder)
    assert list(folder.iterdir()) == []


def test_fast_encode_is_the_native_loader():
    """The old module name is the same module object, so settings made through it hold."""
    from tinylm.tokenizer import _native, fast_encode

    assert fast_encode is _native and sys.modules["tinylm.tokenizer.fast_encode"] is _native


def test_temp_names_are_hidden_and_beside_the_target(tmp_path):
    fd, tmp = new_temp(tmp_path / "vocab.json")
    os.close(fd)
    assert tmp.parent == tmp_path and tmp.name.startswith(f"{TEMP_PREFIX}vocab.json.")
    assert set(tmp.name.removeprefix(f"{TEMP_PREFIX}vocab.json.")) <= set(string.ascii_letters + string.digits + "_")
