"""Documents out of files: the built-in corpus, text, JSONL, Parquet and saved-dataset Arrow files,
and directories of them, each document with its position, so a reader restarts at a position
without parsing anything before it. What the sources are: minitron.data.
"""

from __future__ import annotations

import gzip
import json
import lzma
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from minitron.errors import MinitronError

BUILTIN = "builtin"
BUILTIN_CORPUS = Path(str(resources.files("minitron"))) / "assets" / "corpus" / "python-stdlib.jsonl.xz"
DEFAULT_GLOB = "**/*.txt,**/*.md,**/*.rst,**/*.py,**/*.jsonl,**/*.parquet"
JSONL_SUFFIXES = (".jsonl", ".json")
COMPRESSED = {".gz": gzip.open, ".xz": lzma.open}  # read transparently: data.jsonl.gz, notes.txt.xz
PARQUET_SUFFIXES = (".parquet",)


def resolve_source(source: str) -> tuple[str, Path]:
    if source == BUILTIN:
        if not BUILTIN_CORPUS.exists():
            raise MinitronError(f"the built-in corpus is missing from this installation ({BUILTIN_CORPUS})")
        return BUILTIN, BUILTIN_CORPUS
    path = Path(source).expanduser()
    if not path.exists():
        raise MinitronError(f"--data {source}: no such file or directory (or pass 'builtin')")
    if path.is_dir():
        saved_dataset = (path / "state.json").exists() and (path / "dataset_info.json").exists()
        if saved_dataset or (path / "dataset_dict.json").exists():
            return "saved-dataset", path
        return "directory", path
    return _file_kind(path), path


def _file_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in COMPRESSED]
    if suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        return "parquet"
    if suffixes and suffixes[-1] in JSONL_SUFFIXES:
        return "jsonl"
    return "text"


def _open_text(path: Path):
    opener = COMPRESSED.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding="utf-8")


# Where the document stream stands: (file index, offset in that file, line number). The offset is a byte
# offset for JSONL (of the decompressed stream for .gz/.xz), a row index for Parquet and Arrow, and 1
# for a text file already read. `positioned_documents` restarts from a position without parsing or
# tokenising anything before it.
Position = tuple[int, int, int]
START: Position = (0, 0, 0)


def positioned_documents(spec, start: Position) -> Iterator[tuple[str, Position]]:
    """Every document of `spec`'s source (both splits) from `start` on, each with the position just
    after it. `spec` is a minitron.data.DataSpec (source, text_field, glob)."""
    kind, path = resolve_source(spec.source)
    if kind == BUILTIN:
        files, field = [path], "text"
    elif kind == "saved-dataset":
        files, field = kind_files(kind, path), spec.text_field
    elif kind == "directory":
        files, field = matching_files(path, spec.glob), spec.text_field
        if not files:
            raise MinitronError(f"--data {path}: no files match --glob '{spec.glob}'")
    else:
        files, field = [path], spec.text_field
    file_index, offset, line_no = start
    for index in range(file_index, len(files)):
        file = files[index]
        file_kind = "arrow" if kind == "saved-dataset" else _file_kind(file)
        reader = {"jsonl": _jsonl_documents, "parquet": _parquet_documents, "arrow": _arrow_documents}.get(
            file_kind, _text_document
        )
        for text, (new_offset, new_line) in reader(file, field, offset, line_no):
            yield text, (index, new_offset, new_line)
        offset, line_no = 0, 0


def _text_document(
    path: Path, text_field: str, offset: int, line_no: int
) -> Iterator[tuple[str, tuple[int, int]]]:
    """A text file is one document."""
    if offset:
        return
    try:
        with _open_text(path) as f:
            yield f.read(), (1, 0)
    except UnicodeDecodeError as e:
        raise MinitronError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise MinitronError(f"{path}: corrupt compressed file ({e})") from None


def matching_files(root: Path, glob: str) -> list[Path]:
    patterns = [p.strip() for p in glob.split(",") if p.strip()]
    if not patterns:
        raise MinitronError("--glob is empty; give patterns such as '**/*.txt,**/*.md'")
    files = {p for pattern in patterns for p in root.glob(pattern) if p.is_file()}
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def kind_files(kind: str, path: Path) -> list[Path]:
    if kind != "saved-dataset":
        return [path]
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if "train" not in splits:
            raise MinitronError(f"--data {path}: saved DatasetDict has no 'train' split (has {splits})")
        path = path / "train"
    state = json.loads((path / "state.json").read_text())
    files = [path / f["filename"] for f in state.get("_data_files", [])]
    if not files:
        raise MinitronError(f"--data {path}: saved dataset lists no Arrow files in state.json")
    return files


def _jsonl_documents(
    path: Path, text_field: str, offset: int = 0, line_no: int = 0
) -> Iterator[tuple[str, tuple[int, int]]]:
    opener = COMPRESSED.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:
            if offset:
                f.seek(offset)  # for .gz/.xz this decompresses up to the offset; it parses nothing
            for raw in iter(f.readline, b""):
                line_no += 1
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise MinitronError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict) or text_field not in record:
                    raise MinitronError(f"{path}:{line_no}: no field '{text_field}' (set --text-field)")
                text = record[text_field]
                if not isinstance(text, str):
                    raise MinitronError(f"{path}:{line_no}: field '{text_field}' is not a string")
                yield text, (f.tell(), line_no)
    except UnicodeDecodeError as e:
        raise MinitronError(f"{path}: not UTF-8 text ({e.reason})") from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise MinitronError(f"{path}: corrupt compressed file ({e})") from None


def _pyarrow():
    try:
        import pyarrow
    except ImportError:
        raise MinitronError(
            "reading Parquet or saved datasets needs pyarrow: pip install 'minitron[data]'"
        ) from None
    return pyarrow


def _parquet_documents(
    path: Path, text_field: str, offset: int = 0, line_no: int = 0
) -> Iterator[tuple[str, tuple[int, int]]]:
    _pyarrow()
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several unrelated types for unreadable files
        raise MinitronError(f"{path}: not a readable Parquet file ({e})") from None
    if text_field not in file.schema_arrow.names:
        raise MinitronError(
            f"{path}: no column '{text_field}' (has {file.schema_arrow.names}; set --text-field)"
        )
    # Skip whole row groups before the offset from the metadata alone.
    first_row, groups = 0, []
    for g in range(file.num_row_groups):
        rows = file.metadata.row_group(g).num_rows
        if first_row + rows > offset:
            groups.append(g)
        elif not groups:
            first_row += rows
    row = first_row
    if groups:
        for batch in file.iter_batches(columns=[text_field], batch_size=1024, row_groups=groups):
            yield from _rows(batch.column(0), path, text_field, row, offset)
            row += batch.num_rows


def _arrow_documents(
    path: Path, text_field: str, offset: int = 0, line_no: int = 0
) -> Iterator[tuple[str, tuple[int, int]]]:
    pa = _pyarrow()
    try:
        source = pa.memory_map(str(path))
        reader = pa.ipc.open_stream(source)
    except (OSError, pa.ArrowInvalid) as e:
        raise MinitronError(f"{path}: not a readable Arrow file ({e})") from None
    if text_field not in reader.schema.names:
        raise MinitronError(f"{path}: no column '{text_field}' (has {reader.schema.names}; set --text-field)")
    index = reader.schema.names.index(text_field)
    row = 0
    for batch in reader:  # memory-mapped: batches before the offset are skipped without copying
        if row + batch.num_rows > offset:
            yield from _rows(batch.column(index), path, text_field, row, offset)
        row += batch.num_rows


def _rows(
    column, path: Path, text_field: str, first_row: int, offset: int
) -> Iterator[tuple[str, tuple[int, int]]]:
    """(text, (next row, 0)) of the column's non-null rows at or after `offset`."""
    skip = max(0, offset - first_row)
    for i, value in enumerate(
        _strings(column.slice(skip), path, text_field, keep_none=True), first_row + skip
    ):
        if value is not None:
            yield value, (i + 1, 0)


def _strings(column, path: Path, text_field: str, keep_none: bool = False) -> Iterator[str | None]:
    import pyarrow as pa

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise MinitronError(f"{path}: column '{text_field}' holds {column.type}, not text")
    for value in column.to_pylist():
        if value is not None or keep_none:
            yield value
