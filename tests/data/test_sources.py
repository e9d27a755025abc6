"""Every kind of data source yields the documents written into it, in a fixed order."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minitron.data import DataSpec, describe, documents, is_heldout, token_batches
from minitron.errors import MinitronError
from minitron.text_files import BUILTIN_CORPUS

DOCS = [f"document number {i}: " + "word " * (i % 7 + 1) for i in range(40)]


def all_docs(source, **kw) -> list[str]:
    """Train and held-out documents together, in source order."""
    train = list(documents(DataSpec(source=str(source), **kw)))
    heldout = list(documents(DataSpec(source=str(source), split="heldout", **kw)))
    assert not set(train) & set(heldout)
    # Both splits keep source order; merging them back by document number restores it.
    return sorted(train + heldout, key=lambda d: int(d.split()[2].rstrip(":")))


def test_text_directory_by_glob(tmp_path):
    (tmp_path / "sub").mkdir()
    for i, doc in enumerate(DOCS[:6]):
        ext = [".txt", ".md", ".py"][i % 3]
        (tmp_path / ("sub" if i % 2 else ".") / f"doc{i}{ext}").write_text(doc)
    (tmp_path / "skip.bin").write_bytes(b"\xff\xfe not text")
    assert sorted(all_docs(tmp_path)) == sorted(DOCS[:6])
    only_md = all_docs(tmp_path, glob="**/*.md")
    assert sorted(only_md) == sorted(DOCS[i] for i in range(6) if i % 3 == 1)


def test_directory_order_is_sorted_paths(tmp_path):
    for name, doc in [("b.txt", "second"), ("a.txt", "first"), ("c/a.txt", "third")]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(doc)
    spec = DataSpec(source=str(tmp_path), heldout_fraction=1e-9)
    assert list(documents(spec)) == ["first", "second", "third"]


def test_single_text_file_is_one_document(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("chapter one\n\nchapter two\n")
    assert list(documents(DataSpec(source=str(path), heldout_fraction=1e-9))) == [
        "chapter one\n\nchapter two\n"
    ]


def test_jsonl_with_custom_field(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"body": d, "id": i}) + "\n" for i, d in enumerate(DOCS)) + "\n")
    assert all_docs(path, text_field="body") == DOCS
    with pytest.raises(MinitronError, match=r"data.jsonl:1: no field 'text'"):
        list(documents(DataSpec(source=str(path))))


def test_jsonl_bad_line_names_the_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(MinitronError, match=r"data.jsonl:2: not valid JSON"):
        list(documents(DataSpec(source=str(path), heldout_fraction=0.5)))


def test_parquet(tmp_path):
    path = tmp_path / "data.parquet"
    table = pa.table({"content": DOCS, "n": list(range(len(DOCS)))})
    pq.write_table(table, path, row_group_size=7)  # several row groups: read in pieces
    assert all_docs(path, text_field="content") == DOCS
    with pytest.raises(MinitronError, match="no column 'text'"):
        list(documents(DataSpec(source=str(path))))


def test_directory_of_parquet_shards(tmp_path):
    pq.write_table(pa.table({"text": DOCS[:20]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"text": DOCS[20:]}), tmp_path / "part-1.parquet")
    assert all_docs(tmp_path) == DOCS


def test_save_to_disk_dataset_and_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": DOCS, "label": [0] * len(DOCS)})
    ds.save_to_disk(str(tmp_path / "ds"), max_shard_size="1KB")  # several Arrow files
    assert len(list((tmp_path / "ds").glob("*.arrow"))) > 1
    assert all_docs(tmp_path / "ds") == DOCS
    dd = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_dict({"text": ["other"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert all_docs(tmp_path / "dd") == DOCS
    describe_dd = describe(DataSpec(source=str(tmp_path / "dd")))
    assert describe_dd["kind"] == "saved-dataset" and describe_dd["files"] >= 1


def test_builtin_corpus_is_shipped_with_its_licence():
    assert BUILTIN_CORPUS.exists()
    assert "PYTHON SOFTWARE FOUNDATION LICENSE" in (BUILTIN_CORPUS.parent / "LICENSE-PSF.txt").read_text()
    first = next(documents(DataSpec()))
    assert first.strip()
    d = describe(DataSpec())
    assert d["kind"] == "builtin" and len(d["sha256"]) == 64
    json.dumps(d)


def _written(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing", "no such file or directory"),
        (lambda p: p, "no files match"),
        (lambda p: _written(p / "bad.txt", b"ok \xff\xfe\xfa"), "not UTF-8"),
        (lambda p: _written(p / "empty.txt", b""), "fewer than --seq-len"),
        (lambda p: _written(p / "blank.jsonl", b'{"text": "  "}\n'), "fewer than --seq-len"),
    ],
    ids=["missing", "empty-dir", "undecodable", "empty-file", "blank-jsonl"],
)
def test_bad_sources_give_one_clear_error(tmp_path, tokenizer, setup, message):
    source = setup(tmp_path)
    with pytest.raises(MinitronError, match=message):
        list(token_batches(DataSpec(source=str(source), seq_len=8, heldout_fraction=0.01), tokenizer))


def test_spec_validation_names_the_flag():
    with pytest.raises(MinitronError, match="--seq-len"):
        DataSpec(seq_len=1)
    with pytest.raises(MinitronError, match="--heldout-fraction"):
        DataSpec(heldout_fraction=1.0)
    with pytest.raises(MinitronError, match="split"):
        DataSpec(split="test")


def test_heldout_membership_is_the_documented_hash():
    import hashlib

    for doc in DOCS:
        h = int(hashlib.sha256(doc.encode()).hexdigest()[:16], 16)
        assert is_heldout(doc, 0.3) == (h / 2**64 < 0.3)


def test_compressed_jsonl_and_text(tmp_path):
    import gzip
    import lzma

    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"text": d}) + "\n" for d in DOCS[:20]))
    with lzma.open(tmp_path / "b.txt.xz", "wt") as f:
        f.write(DOCS[20])
    assert all_docs(tmp_path / "a.jsonl.gz") == DOCS[:20]
    assert all_docs(tmp_path / "b.txt.xz") == [DOCS[20]]
    assert all_docs(tmp_path, glob="**/*.jsonl.gz,**/*.txt.xz") == DOCS[:21]


def test_missing_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": DOCS}), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    with pytest.raises(MinitronError, match=r"pip install 'minitron\[data\]'"):
        list(documents(DataSpec(source=str(path))))
