"""Dataset readers: the standard formats parse, and a malformed row names its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.readers import (
    DataFormatError,
    read_conll,
    read_labelled_text,
    read_parallel,
    read_plain_text,
)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_tsv_rows_keep_quotes_and_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", 'text\tlabel\nit \'s "great"\t1\n\nbad movie\t0\n')
    rows = read_labelled_text(path)
    assert [(r.text, r.label, r.line) for r in rows] == [('it \'s "great"', "1", 2), ("bad movie", "0", 4)]


def test_csv_with_quoting_and_other_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'id,sentence,y\n1,"fine, really",pos\n2,awful,neg\n')
    rows = read_labelled_text(path, text_column="sentence", label_column="y")
    assert [(r.text, r.label) for r in rows] == [("fine, really", "pos"), ("awful", "neg")]


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("text\tlabel\ngood\t1\nno label here\n", 3, "expected 2 fields, found 1"),
        ("text\tlabel\ngood\t1\textra\n", 2, "expected 2 fields, found 3"),
        ("text\tlabel\n\t1\n", 2, "empty text"),
        ("text\tlabel\ngood\t \n", 2, "empty label"),
        ("sentence\tlabel\ngood\t1\n", 1, "no column 'text'"),
        ("", 1, "empty file"),
    ],
)
def test_malformed_tsv_names_file_and_line(tmp_path: Path, content: str, line: int, message: str) -> None:
    path = write(tmp_path / "bad.tsv", content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_labelled_text(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}:")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.tsv"):
        read_labelled_text(tmp_path / "nope.tsv")


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O
"""


def test_conll_sentences_token_first_tag_last(tmp_path: Path) -> None:
    sentences = read_conll(write(tmp_path / "a.conll", CONLL))
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert [s.line for s in sentences] == [3, 7]


def test_conll_without_trailing_blank_line(tmp_path: Path) -> None:
    sentences = read_conll(write(tmp_path / "a.conll", "a X O\nb X B-LOC"))
    assert sentences[0].tags == ["O", "B-LOC"]


def test_malformed_conll_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.conll", "EU B-ORG\nrejects\n")
    with pytest.raises(DataFormatError, match=r"bad.conll:2: expected a token and a tag"):
        read_conll(path)


def test_parallel_pairs_and_mismatched_lengths(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", "a man .\ntwo dogs .\n")
    tgt = write(tmp_path / "train.fr", "un homme .\ndeux chiens .\n")
    assert [(p.source, p.target, p.line) for p in read_parallel(src, tgt)] == [
        ("a man .", "un homme .", 1),
        ("two dogs .", "deux chiens .", 2),
    ]
    short = write(tmp_path / "short.fr", "un homme .\n")
    with pytest.raises(DataFormatError, match=r"short.fr:2: ends before train.en"):
        read_parallel(src, short)
    empty = write(tmp_path / "empty.fr", "un homme .\n \n")
    with pytest.raises(DataFormatError, match=r"empty.fr:2: empty segment"):
        read_parallel(src, empty)


def test_plain_text_and_invalid_utf8(tmp_path: Path) -> None:
    assert read_plain_text(write(tmp_path / "a.txt", "First Citizen:\nBefore we proceed")) == (
        "First Citizen:\nBefore we proceed"
    )
    with pytest.raises(DataFormatError, match=r"b.txt:2: invalid UTF-8"):
        read_plain_text(write(tmp_path / "b.txt", b"fine\nbroken \xff byte\n"))
