"""tinylm.corpus.bundled: the bundled corpus and the document split the quick start uses."""

from tinylm.corpus.bundled import BUNDLED_CORPUS, DOC_SEPARATOR, extract_bundled_corpus, hold_out_every, split_documents, write_documents


def test_documents_round_trip_and_every_nth_is_held_out(tmp_path):
    text = f"\n{DOC_SEPARATOR}\n".join(f"doc {i}\nline two" for i in range(10)) + f"\n{DOC_SEPARATOR}\n\n{DOC_SEPARATOR}"
    docs = split_documents(text)
    assert docs == [f"doc {i}\nline two" for i in range(10)]  # the empty document is dropped
    train, val = hold_out_every(docs, 5)
    assert val == ["doc 4\nline two", "doc 9\nline two"] and len(train) == 8 and not set(train) & set(val)
    write_documents(tmp_path / "val.txt", val)
    assert split_documents((tmp_path / "val.txt").read_text(encoding="utf-8")) == val


def test_bundled_corpus_extracts_once(tmp_path):
    path = extract_bundled_corpus(tmp_path / "corpus.txt")
    size = path.stat().st_size
    assert size > 5_000_000 and BUNDLED_CORPUS.stat().st_size < size
    assert len(split_documents(path.read_text(encoding="utf-8"))) > 100
    mtime = path.stat().st_mtime_ns
    assert extract_bundled_corpus(path) == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten
