"""Readers for the standard dataset formats, from any path a user gives.

* delimited text with a header (TSV/CSV): :func:`read_labelled_text`
* CoNLL column files (token first, tag last, blank line between sentences, ``-DOCSTART-`` skipped):
  :func:`read_conll`
* aligned parallel text files, one segment per line: :func:`read_parallel`
* plain text: :func:`read_plain_text`

A malformed row raises :class:`DataFormatError`, whose message names the file and the 1-based line number.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    def __init__(self, path: Path | str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = Path(path), line


@dataclass(frozen=True, slots=True)
class LabelledText:
    text: str
    label: str
    line: int


@dataclass(frozen=True, slots=True)
class TaggedSentence:
    tokens: list[str]
    tags: list[str]
    line: int


@dataclass(frozen=True, slots=True)
class ParallelPair:
    source: str
    target: str
    line: int


def _open_text(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    return path.open(encoding="utf-8", newline="")


def read_labelled_text(
    path: Path | str,
    text_column: str = "text",
    label_column: str = "label",
    delimiter: str | None = None,
) -> list[LabelledText]:
    """Rows of a headed TSV (``.tsv``, no quoting) or CSV (``.csv``, standard quoting) file.

    ``delimiter`` overrides the guess from the suffix. Every row must have exactly the header's number of
    fields, a non-empty text and a non-empty label.
    """
    path = Path(path)
    is_tsv = (delimiter or ("\t" if path.suffix.lower() != ".csv" else ",")) == "\t"
    delim = delimiter or ("\t" if is_tsv else ",")
    quoting = csv.QUOTE_NONE if is_tsv else csv.QUOTE_MINIMAL
    rows: list[LabelledText] = []
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delim, quoting=quoting, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError(path, 1, "empty file, expected a header row") from None
        for column in (text_column, label_column):
            if column not in header:
                raise DataFormatError(path, 1, f"header {header} has no column {column!r}")
        text_at, label_at = header.index(text_column), header.index(label_column)
        try:
            for fields in reader:
                line = reader.line_num
                if not fields:
                    continue  # blank line
                if len(fields) != len(header):
                    raise DataFormatError(path, line, f"expected {len(header)} fields, found {len(fields)}")
                text, label = fields[text_at].strip(), fields[label_at].strip()
                if not text:
                    raise DataFormatError(path, line, "empty text")
                if not label:
                    raise DataFormatError(path, line, "empty label")
                rows.append(LabelledText(text, label, line))
        except csv.Error as exc:
            raise DataFormatError(path, reader.line_num, str(exc)) from exc
    return rows


def read_conll(
    path: Path | str, token_column: int = 0, tag_column: int = -1, separator: str | None = None
) -> list[TaggedSentence]:
    """Sentences of a CoNLL column file. Every non-blank line needs at least two columns."""
    path = Path(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            sentences.append(TaggedSentence(list(tokens), list(tags), start))
            tokens.clear()
            tags.clear()

    with _open_text(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            columns = line.split(separator)
            if columns[0] == "-DOCSTART-":
                flush()
                continue
            if len(columns) < 2:
                raise DataFormatError(path, line_no, f"expected a token and a tag column, found {line!r}")
            try:
                token, tag = columns[token_column], columns[tag_column]
            except IndexError:
                raise DataFormatError(path, line_no, f"no column {tag_column} in {line!r}") from None
            if not tokens:
                start = line_no
            tokens.append(token)
            tags.append(tag)
    flush()
    return sentences


def read_parallel(source_path: Path | str, target_path: Path | str) -> list[ParallelPair]:
    """Line-aligned source/target files; both must have the same number of lines, none of them empty."""
    source_path, target_path = Path(source_path), Path(target_path)
    pairs: list[ParallelPair] = []
    with _open_text(source_path) as src, _open_text(target_path) as tgt:
        line_no = 0
        for line_no, (s, t) in enumerate(_zip_lines(src, tgt, source_path, target_path), start=1):
            s, t = s.strip(), t.strip()
            if not s:
                raise DataFormatError(source_path, line_no, "empty segment")
            if not t:
                raise DataFormatError(target_path, line_no, "empty segment")
            pairs.append(ParallelPair(s, t, line_no))
    return pairs


def _zip_lines(src, tgt, source_path: Path, target_path: Path) -> Iterator[tuple[str, str]]:
    line_no = 0
    while True:
        s, t = src.readline(), tgt.readline()
        line_no += 1
        if not s and not t:
            return
        if not s:
            raise DataFormatError(source_path, line_no, f"ends before {target_path.name} (fewer lines)")
        if not t:
            raise DataFormatError(target_path, line_no, f"ends before {source_path.name} (fewer lines)")
        yield s, t


def read_plain_text(path: Path | str) -> str:
    """The whole file as one string (UTF-8); an invalid byte is an error naming its line."""
    path = Path(path)
    data = path.read_bytes() if path.is_file() else None
    if data is None:
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"invalid UTF-8: {exc.reason}") from exc


def file_sha256(path: Path) -> str:
    """The checksum recorded for a data file in a run's data info and the model manifest."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_info(path: Path, rows: int) -> dict[str, object]:
    """What a run records of one data split: where it was read, how many rows, and its checksum."""
    return {"path": str(path), "rows": rows, "sha256": file_sha256(path)}


def splits_info(
    paths: Mapping[str, Path], rows: Mapping[str, int], copies: int = 0, lexicon: Path | None = None
) -> dict[str, Any]:
    """``split_info`` of every split (``rows``: examples per split); ``copies`` perturbed copies at the end
    of the training split (distillation) are counted apart from the rows read, and the part-of-speech
    ``lexicon`` they were drawn with (a file) is recorded beside them."""
    info = {
        split: split_info(paths[split], count - (copies if split == "train" else 0))
        for split, count in rows.items()
    }
    if copies:
        info["train"]["perturbed_copies"] = copies
    if copies and lexicon is not None:
        info["train"]["pos_lexicon"] = {"path": str(lexicon), "sha256": file_sha256(lexicon)}
    return info
