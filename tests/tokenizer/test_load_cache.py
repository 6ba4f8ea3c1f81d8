"""The tokenizer cache (tinylm.tokenizer.load_cache): a second load of the same files comes from it,
gives the same tokenizer, and nothing about the cache can make a load fail or go stale."""

import shutil
from pathlib import Path

import pytest

from tinylm import Tokenizer
from tinylm.errors import InputFileError
from tinylm.tokenizer import files, hf_json, load_cache

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"
TEXT = "Hello world, it's 2026!\n  Ünïcödé <|endoftext|> end"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(load_cache.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def gpt2_dir(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    shutil.copy(FIXTURES / "gpt2_vocab.json", folder / "vocab.json")
    shutil.copy(FIXTURES / "gpt2_merges.txt", folder / "merges.txt")
    return folder


def _no_file_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the files were read and parsed again")

    monkeypatch.setattr("tinylm.tokenizer.bpe.load_vocab_and_merges", refuse)
    monkeypatch.setattr(hf_json, "load_tokenizer_json", refuse)


def _same(a: Tokenizer, b: Tokenizer) -> None:
    assert a.vocab == b.vocab and a.merges == b.merges and a.special_tokens == b.special_tokens
    assert a.encode(TEXT) == b.encode(TEXT) and a.encode_to_numpy(TEXT).tolist() == b.encode(TEXT)
    assert a.decode(a.encode(TEXT)) == TEXT


def test_second_load_comes_from_the_cache(cache, gpt2_dir, monkeypatch):
    first = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    assert len(list(cache.glob("*.pickle"))) == 1
    _no_file_loading(monkeypatch)
    second = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    _same(first, second)
    assert second._fast is not None  # the C encoder is rebuilt, not pickled


def test_special_tokens_and_backend_are_part_of_the_load(cache, gpt2_dir):
    with_eot = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    plain = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt")
    assert with_eot.special_tokens == [EOT] and plain.special_tokens == []
    assert len(list(cache.glob("*.pickle"))) == 2
    py = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT], backend="python")
    assert py._fast is None and py.encode(TEXT) == with_eot.encode(TEXT)


def test_changed_files_are_loaded_again(cache, gpt2_dir):
    before = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    lines = (gpt2_dir / "merges.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (gpt2_dir / "merges.txt").write_text("".join(lines[:-1000]), encoding="utf-8")  # fewer merges
    after = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    assert len(after.merges) == len(before.merges) - 1000
    _same(after, Tokenizer(*files.load_vocab_and_merges(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT]), [EOT]))


@pytest.mark.parametrize("damage", [b"", b"not a pickle", b"\x80\x05K\x01."])
def test_a_damaged_entry_is_ignored_and_rewritten(cache, gpt2_dir, damage):
    good = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    (entry,) = cache.glob("*.pickle")
    entry.write_bytes(damage)
    again = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    _same(good, again)
    assert entry.stat().st_size > 1000  # rewritten whole


def test_an_unwritable_cache_or_cache_off_never_fails_a_load(tmp_path, gpt2_dir, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(load_cache.CACHE_ENV, str(blocker / "cache"))
    _same(Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT]),
          Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT], backend="python"))

    def untouched(*args, **kwargs):
        raise AssertionError("the cache was used while off")

    monkeypatch.setattr(load_cache, "_read", untouched)
    monkeypatch.setattr(load_cache, "_write", untouched)
    for off in ("off", "0", "", " OFF "):
        monkeypatch.setenv(load_cache.CACHE_ENV, off)
        assert load_cache.cache_dir() is None
        Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])


def test_no_home_folder_turns_the_cache_off(monkeypatch, gpt2_dir):
    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv(load_cache.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert load_cache.cache_dir() is None
    assert Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT]).special_tokens == [EOT]


def test_a_file_changed_while_loading_is_not_cached(cache, gpt2_dir, tmp_path, monkeypatch):
    """The key is taken again after parsing: a tokenizer parsed from other bytes than the ones
    hashed is never stored under the old bytes' key (it would be served for them forever)."""
    pristine = tmp_path / "pristine"
    shutil.copytree(gpt2_dir, pristine)
    real = files.load_vocab_and_merges

    def changed_midway(vocab_path, merges_path, specials=None):
        lines = Path(merges_path).read_text(encoding="utf-8").splitlines(keepends=True)
        Path(merges_path).write_text("".join(lines[:-1000]), encoding="utf-8")
        return real(vocab_path, merges_path, specials)

    monkeypatch.setattr("tinylm.tokenizer.bpe.load_vocab_and_merges", changed_midway)
    Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    assert not cache.exists() or not list(cache.glob("*.pickle"))
    monkeypatch.setattr("tinylm.tokenizer.bpe.load_vocab_and_merges", real)
    assert len(Tokenizer.from_files(pristine / "vocab.json", pristine / "merges.txt", [EOT]).merges) == 50_000


def test_format_version_and_class_are_part_of_the_key(cache, gpt2_dir, monkeypatch):
    Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    monkeypatch.setattr(load_cache, "FORMAT", load_cache.FORMAT + 1)
    Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    assert len(list(cache.glob("*.pickle"))) == 2

    class Mine(Tokenizer):
        pass

    mine = Mine.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    assert type(mine) is Mine and len(list(cache.glob("*.pickle"))) == 3


def test_special_tokens_in_any_iterable(cache, gpt2_dir):
    as_set = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", {EOT})
    assert as_set.special_tokens == [EOT]
    assert Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", (EOT,)).encode(TEXT) == as_set.encode(TEXT)


def test_entries_unread_for_a_month_are_pruned(cache, gpt2_dir):
    import os
    import time

    Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    (old,) = cache.glob("*.pickle")
    month_ago = time.time() - (load_cache.PRUNE_DAYS + 1) * 86400
    os.utime(old, (month_ago, month_ago))
    Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])  # read: touched, kept
    assert old.exists() and old.stat().st_mtime > month_ago
    os.utime(old, (month_ago, month_ago))
    Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt")  # another entry written: the old one goes
    assert not old.exists() and len(list(cache.glob("*.pickle"))) == 1


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(load_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert load_cache.cache_dir() == tmp_path / "tinylm" / "tokenizers"


def test_missing_files_raise_the_loaders_error_and_cache_nothing(cache, gpt2_dir):
    with pytest.raises(InputFileError):
        Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "missing.txt", [EOT])
    with pytest.raises(InputFileError):
        Tokenizer.from_dir(gpt2_dir.parent / "no-such-folder")
    assert not cache.exists() or not list(cache.glob("*.pickle"))


def test_tokenizer_json_is_cached_too(cache, gpt2_dir, monkeypatch):
    tok = Tokenizer.from_files(gpt2_dir / "vocab.json", gpt2_dir / "merges.txt", [EOT])
    tok.save_dir(gpt2_dir)
    first = Tokenizer.from_file(gpt2_dir / "tokenizer.json")
    _no_file_loading(monkeypatch)
    second = Tokenizer.from_file(gpt2_dir / "tokenizer.json")
    _same(first, second)
    _same(tok, second)
