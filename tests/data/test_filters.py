"""Curation filters: the base class's batching/counters, and each filter's decisions."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pytest

from cogumi_ray.data.config import CurateConfig
from cogumi_ray.data.filters import (
    KEEP,
    Filter,
    LanguageFilter,
    LengthFilter,
    Outcome,
    PIIFilter,
    build_filters,
    drop,
)
from cogumi_ray.data.filters.length import count_tokens
from cogumi_ray.data.filters.pii import scrub
from cogumi_ray.data.rows import DROP, STATS
from cogumi_ray.errors import DataError


def _batch(*pairs: tuple[str, str], drops: list[str] | None = None) -> pa.Table:
    cols = {
        "id": [f"r{i}" for i in range(len(pairs))],
        "instruction": [p[0] for p in pairs],
        "response": [p[1] for p in pairs],
        "metadata": ["{}"] * len(pairs),
    }
    if drops is not None:
        cols[DROP] = drops
        cols[STATS] = [""] * len(pairs)
    return pa.table(cols)


def _stats(table: pa.Table) -> dict:
    blobs = [json.loads(s) for s in table.column(STATS).to_pylist() if s]
    return {k: v for b in blobs for k, v in b.items()}


class ShoutFilter(Filter):
    """A minimal filter: drops rows that shout, lower-cases the rest's response."""

    name = "shout"

    def check(self, row):
        if row["instruction"].isupper():
            return drop("shouting", caps=1)
        return Outcome(update={"response": row["response"].lower()})


def test_base_marks_drops_counts_and_skips_dropped_rows():
    batch = _batch(("HELLO", "A"), ("hi", "B"), ("bye", "C"), drops=["", "", "length:too_short"])
    out = ShoutFilter()(batch)
    assert out.column(DROP).to_pylist() == ["shout:shouting", "", "length:too_short"]
    assert out.column("response").to_pylist() == ["A", "b", "C"]  # dropped row left untouched
    stats = _stats(out)
    assert stats["shout.in"] == 2 and stats["shout.dropped_shouting"] == 1
    assert stats["shout.caps"] == 1 and stats["shout.seconds"] >= 0


def test_base_adds_annotation_columns_to_plain_example_batches():
    out = ShoutFilter()(_batch(("hi", "X")))
    assert out.column(DROP).to_pylist() == [""]
    assert _stats(out)["shout.in"] == 1


def test_base_rejects_non_string_text():
    batch = pa.table({"id": ["r0"], "instruction": [None], "response": ["x"]}, )
    with pytest.raises(DataError, match="instruction.*must be a string"):
        ShoutFilter()(batch)
    bad = pa.table({"id": ["r0"], "instruction": ["x"], "response": [3]})
    with pytest.raises(DataError, match="response"):
        LengthFilter(1, 10)(bad)


def test_count_tokens_approximates_subwords():
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("internationalization") == 3  # long words split like BPE would
    assert count_tokens("12345678") == 3  # digits in groups of up to three
    assert count_tokens("def f(x): return x+1") == 10


def test_length_filter_bounds():
    f = LengthFilter(min_tokens=3, max_tokens=8)
    assert f.check({"instruction": "Hi", "response": "yo"}) == drop("too_short")
    assert f.check({"instruction": "Add two and three.", "response": "5"}) == KEEP
    assert f.check({"instruction": "word " * 10, "response": "x"}) == drop("too_long")


@pytest.mark.parametrize("instruction, response", [
    ("Explain what a hash map is in one sentence.", "It maps keys to values."),
    ("Write a function add(a, b) that returns the sum.", "def add(a, b):\n    return a + b"),
    ("Call the weather tool for Paris in celsius.",
     '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'),
    ("Sort these words: apple, kiwi, banana", "apple, banana, kiwi"),
])
def test_language_filter_keeps_english_incl_code_and_json(instruction, response):
    out = LanguageFilter(min_english_prob=0.1, min_letters=20).check(
        {"instruction": instruction, "response": response})
    assert not out.reason


def test_language_filter_short_ascii_text_is_undetermined_and_kept():
    out = LanguageFilter(0.1, 20).check({"instruction": "Compute 17 * 23.", "response": "391"})
    assert out == Outcome(counts={"undetermined": 1})


@pytest.mark.parametrize("instruction, response, lang", [
    ("Quelle est la capitale de la France ?", "Paris est la capitale de la France.", "fr"),
    ("Schreiben Sie eine Funktion, die zwei Zahlen addiert.", "def add(a, b): return a + b", "de"),
    ("¿Cuál es mayor, 3/4 o 0,7?", "3/4", "es"),
    ("17 乘以 23 等于多少？", "391", "zh"),
])
def test_language_filter_drops_non_english(instruction, response, lang):
    out = LanguageFilter(0.1, 20).check({"instruction": instruction, "response": response})
    assert out.reason == "non_english"
    assert out.counts == {f"detected_{lang}": 1}


def test_pii_scrub_kinds_and_counts():
    text = ("Mail jane.doe@example.com or call +1 (555) 123-4567; key sk-proj-abcDEF1234567890abcdef, "
            "aws AKIAIOSFODNN7EXAMPLE, token ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ, "
            "secret d41d8cd98f00b204e9800998ecf8427e")
    clean, found = scrub(text)
    assert found == {"email": 1, "phone": 1, "api_key": 3, "secret": 1}
    for placeholder in ("[EMAIL]", "[PHONE]", "[API_KEY]", "[SECRET]"):
        assert placeholder in clean
    assert "@" not in clean and "555" not in clean and "AKIA" not in clean


@pytest.mark.parametrize("text", [
    "What is 123456789 * 2?", "Sort: 100 200 300 400 500", "The date is 2024-01-15.",
    "Ping 192.168.1.10", "x = [1, 2, 3, 4, 5, 6, 7]", "a_very_long_identifier_name_without_digits",
])
def test_pii_no_false_positives_on_numbers_and_code(text):
    assert scrub(text) == (text, {})


def test_pii_filter_scrub_and_drop_modes():
    row = {"instruction": "Email bob@corp.io the report.", "response": "Sent to bob@corp.io.",
           "metadata": json.dumps({"to": "bob@corp.io"})}
    out = PIIFilter("scrub").check(dict(row))
    assert not out.reason
    assert out.update["instruction"] == "Email [EMAIL] the report."
    assert json.loads(out.update["metadata"]) == {"to": "[EMAIL]"}  # no PII left in any artifact
    assert out.counts == {"email": 3, "rows_with_pii": 1}
    dropped = PIIFilter("drop").check(dict(row))
    assert dropped.reason == "has_pii" and dropped.counts["email"] == 3
    assert PIIFilter("scrub").check({"instruction": "Add 2 and 3.", "response": "5"}) == KEEP
    with pytest.raises(ValueError, match="scrub"):
        PIIFilter("keep")  # type: ignore[arg-type]


def test_pii_filter_batch_counts_per_kind():
    batch = _batch(("Call 555-123-4567 now.", "ok"), ("Write to a@b.org.", "done"), ("Plain.", "ok"))
    out = PIIFilter("scrub")(batch)
    assert out.column("instruction").to_pylist() == ["Call [PHONE] now.", "Write to [EMAIL].", "Plain."]
    stats = _stats(out)
    assert (stats["pii.phone"], stats["pii.email"], stats["pii.rows_with_pii"]) == (1, 1, 2)


def test_build_filters_follows_config():
    assert [f.name for f in build_filters(CurateConfig())] == ["length", "language", "pii"]
    cfg = CurateConfig(english_only=False, pii="keep")
    assert [f.name for f in build_filters(cfg)] == ["length"]
    with pytest.raises(ValueError, match="min_tokens"):
        CurateConfig(min_tokens=10, max_tokens=5)


def test_filter_chain_counts_add_up_in_the_report_table():
    from cogumi_ray.data.report import filter_table, tally_batch
    from cogumi_ray.data.rows import sum_stats

    batch = _batch(
        ("Hi", "ok"),  # too short
        ("Explain how a bicycle gear works in simple terms.", "Gears trade force for speed."),
        ("Quelle est la capitale de la France et pourquoi ?", "Paris est la capitale."),
        ("Mail the notes to ana@example.com tomorrow morning please.", "Will do."),
    )
    for f in build_filters(CurateConfig()):
        batch = f(batch)
    summary = tally_batch(batch)
    drops = Counter(json.loads(summary.column("drops")[0].as_py()))
    stats = sum_stats(summary.column("stats").to_pylist())
    table = {row["filter"]: row for row in filter_table(["length", "language", "pii"], drops, stats)}
    assert drops[""] == 2
    assert (table["length"]["rows_in"], table["length"]["rows_out"]) == (4, 3)
    assert table["language"]["dropped"] == {"non_english": 1}
    assert (table["pii"]["rows_in"], table["pii"]["rows_out"]) == (2, 2)
    assert table["pii"]["counts"] == {"email": 1, "rows_with_pii": 1}
