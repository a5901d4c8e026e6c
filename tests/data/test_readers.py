"""Readers: every instruction format normalised to Example; malformed rows quarantined with lines."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cogumi_ray.data.normalize import RecordError, content_id, normalize_record
from cogumi_ray.data.parse import iter_json_array, iter_jsonl, iter_parquet
from cogumi_ray.data.readers import (
    count_newlines,
    list_input_files,
    plan_pieces,
    read_examples,
    read_piece,
)
from cogumi_ray.data.rows import DETAIL, DROP, FILE, LINE, RAW
from cogumi_ray.errors import DataError


def test_alpaca_input_is_appended_to_instruction():
    ex = normalize_record({"instruction": "Translate.", "input": "Hello", "output": "Bonjour"}, "s")
    assert (ex.instruction, ex.response) == ("Translate.\n\nHello", "Bonjour")
    empty_input = normalize_record({"instruction": "Say hi.", "input": "", "output": "hi"}, "s")
    assert empty_input.instruction == "Say hi."


def test_sharegpt_takes_first_user_assistant_pair():
    rec = {"conversations": [
        {"from": "system", "value": "Be terse."},
        {"from": "human", "value": "What is 2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "And 3+3?"},
        {"from": "gpt", "value": "6"},
    ]}
    ex = normalize_record(rec, "s")
    assert (ex.instruction, ex.response) == ("What is 2+2?", "4")
    chat = normalize_record({"messages": [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello"}]}, "s")
    assert (chat.instruction, chat.response) == ("Hi", "Hello")


@pytest.mark.parametrize("rec", [
    {"prompt": "P", "response": "R"},
    {"prompt": "P", "completion": "R"},
    {"question": "P", "answer": "R"},
    {"instruction": "P", "response": "R"},
])
def test_pair_formats(rec):
    ex = normalize_record(rec, "file1")
    assert (ex.instruction, ex.response, ex.source) == ("P", "R", "file1")
    assert ex.id == content_id("P", "R")  # stable, content-derived


def test_top_level_fields_kept_and_extras_go_to_metadata():
    rec = {"id": 7, "instruction": "I", "response": "R", "domain": "math", "difficulty": "hard",
           "source": "suite", "metadata": json.dumps({"answer": 42}), "license": "cc-by"}
    ex = normalize_record(rec, "ignored")
    assert (ex.id, ex.domain, ex.difficulty, ex.source) == ("7", "math", "hard", "suite")
    assert ex.metadata == {"answer": 42, "license": "cc-by"}


@pytest.mark.parametrize("rec, reason", [
    ([1, 2], "not_object"),
    ({"foo": "bar"}, "unknown_format"),
    ({"instruction": "I", "response": 5}, "bad_type"),
    ({"instruction": "I", "response": "   "}, "empty_field"),
    ({"question": "Q"}, "bad_type"),  # answer missing -> None is not a string
    ({"instruction": "I", "response": "R", "id": [1]}, "bad_type"),
    ({"instruction": "I", "response": "R", "domain": 3}, "bad_type"),
    ({"instruction": "I", "response": "R", "metadata": "{oops"}, "bad_metadata"),
    ({"instruction": "I", "response": "R", "metadata": [1]}, "bad_metadata"),
    ({"conversations": "hello"}, "bad_type"),
    ({"conversations": [{"from": "human", "value": "only a question"}]}, "no_turn_pair"),
])
def test_bad_records_raise_with_reason(rec, reason):
    with pytest.raises(RecordError) as err:
        normalize_record(rec, "s")
    assert err.value.reason == reason


def _write_jsonl(path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def test_jsonl_malformed_lines_quarantined_with_line_numbers(tmp_path):
    good = json.dumps({"instruction": "Add 2 and 3.", "response": "5"})
    path = _write_jsonl(tmp_path / "mix.jsonl", [
        good, "{not json", "", json.dumps(["a"]), json.dumps({"x": 1}), good,
    ])
    rows = list(iter_jsonl(path))
    assert len(rows) == 5  # the blank line is layout, not a record
    bad = {r[LINE]: r[DROP] for r in rows if r[DROP]}
    assert bad == {2: "quarantine:bad_json", 4: "quarantine:not_object",
                   5: "quarantine:unknown_format"}
    assert all(r[FILE] == path for r in rows)
    assert next(r for r in rows if r[LINE] == 2)[RAW] == "{not json"
    ok = [r for r in rows if not r[DROP]]
    assert [r[LINE] for r in ok] == [1, 6] and ok[0]["response"] == "5"


def test_jsonl_bad_utf8_and_gzip_and_json_array(tmp_path):
    raw = tmp_path / "enc.jsonl"
    raw.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff\xfe"}\n')
    rows = list(iter_jsonl(str(raw)))
    assert [r[DROP] for r in rows] == ["", "quarantine:bad_encoding"]

    gz = tmp_path / "z.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
    assert [r["instruction"] for r in iter_jsonl(str(gz))] == ["Q?"]

    arr = tmp_path / "alpaca.json"
    arr.write_text(json.dumps([{"instruction": "I", "input": "", "output": "O"}, 3]))
    rows = list(iter_json_array(str(arr)))
    assert [(r[LINE], r[DROP]) for r in rows] == [(1, ""), (2, "quarantine:not_object")]


def test_parquet_rows_and_bad_types(tmp_path):
    path = tmp_path / "p.parquet"
    table = pa.table({
        "prompt": ["Name a color.", "Name a fruit.", None],
        "response": ["Blue.", "Apple.", "x"],
        "difficulty": ["easy", "easy", "easy"],
    })
    pq.write_table(table, path)
    rows = list(iter_parquet(str(path)))
    assert [r[LINE] for r in rows] == [1, 2, 3]
    assert [r[DROP] for r in rows] == ["", "", "quarantine:bad_type"]
    assert "prompt" in rows[2][DETAIL]
    assert rows[0]["difficulty"] == "easy" and rows[0]["source"] == "p"

    notparquet = tmp_path / "broken.parquet"
    notparquet.write_text("hello")
    assert [r[DROP] for r in iter_parquet(str(notparquet))] == ["quarantine:bad_parquet"]


def _piecewise(path: str, fmt: str, piece_bytes: int) -> tuple[int, list[tuple]]:
    """Read a file piece by piece as the Ray plan would, numbering ranges by counted newlines."""
    pieces = plan_pieces([(path, fmt)], piece_bytes)
    before = 0
    rows = []
    for p in pieces:
        if p["first_row"] == -1:  # byte range: newlines before it, as _number_ranges computes
            p = {**p, "first_row": before}
            before += count_newlines(p)["newlines"]
        rows += [(r[LINE], r[DROP], r["instruction"]) for r in read_piece(p)]
    return len(pieces), rows


def test_large_jsonl_is_read_in_byte_ranges_with_the_same_rows_and_lines(tmp_path):
    lines = []
    for i in range(40):
        if i % 7 == 3:
            lines.append(f"{{broken json line number {i}")
        elif i % 11 == 5:
            lines.append("")
        else:
            lines.append(json.dumps({"prompt": f"Question {i} " + "x" * (i % 13), "response": "A"}))
    path = _write_jsonl(tmp_path / "big.jsonl", lines)
    whole = [(r[LINE], r[DROP], r["instruction"]) for r in iter_jsonl(path)]
    for piece_bytes in (1, 37, 100, 333):
        n, rows = _piecewise(path, "jsonl", piece_bytes)
        assert n > 1 and rows == whole, piece_bytes


def test_large_parquet_is_read_in_row_group_runs(tmp_path):
    path = tmp_path / "big.parquet"
    table = pa.table({"question": [f"Q{i}" for i in range(35)], "answer": ["A"] * 35})
    pq.write_table(table, path, row_group_size=10)
    n, rows = _piecewise(str(path), "parquet", 1)
    assert n == 4
    assert [(line, q) for line, _, q in rows] == [(i + 1, f"Q{i}") for i in range(35)]


def test_list_input_files(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_text("")
    (d / "sub" / "b.parquet").write_text("")
    (d / ".hidden.jsonl").write_text("")
    (d / "notes.txt").write_text("")
    found = list_input_files([str(d)])
    names = [(p.rsplit("/", 1)[-1], f) for p, f in found]
    assert names == [("a.jsonl", "jsonl"), ("b.parquet", "parquet")]
    with pytest.raises(DataError, match="does not exist"):
        list_input_files([str(tmp_path / "missing")])
    with pytest.raises(DataError, match="unsupported suffix"):
        list_input_files([str(d / "notes.txt")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no supported files"):
        list_input_files([str(tmp_path / "empty")])


def test_read_examples_on_ray(ray_session, tmp_path):
    a = _write_jsonl(tmp_path / "a.jsonl", [
        json.dumps({"instruction": f"Task {i}", "response": f"Answer {i}"}) for i in range(5)
    ] + ["{broken"])
    pq.write_table(pa.table({"question": ["Q1", "Q2"], "answer": ["A1", "A2"]}), tmp_path / "b.parquet")
    rows = read_examples([a, str(tmp_path / "b.parquet")], piece_bytes=40).take_all()
    assert len(rows) == 8
    bad = [r for r in rows if r[DROP]]
    assert [(b[LINE], b[DROP]) for b in bad] == [(6, "quarantine:bad_json")]
    assert sorted(r[LINE] for r in rows if r[FILE] == a) == [1, 2, 3, 4, 5, 6]
    assert sorted(r["instruction"] for r in rows if not r[DROP])[:2] == ["Q1", "Q2"]
