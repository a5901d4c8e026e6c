"""Planted mess: present at the configured rates, labelled, and really what it claims to be."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite import generate_suite, verify, write_raw_suite
from cogumi_ray.data.suite.mess import similarity

CFG = SuiteConfig(examples_per_domain=60)  # 300 clean rows: 15 exact, 15 near, 6 of each junk kind
CONTENT = {"alpaca": ("instruction", "input", "output"), "sharegpt": ("conversations",),
           "prompt_response": ("prompt", "response"), "qa": ("question", "answer")}
PII = {"email": r"[\w.]+@[\w-]+\.\w+", "phone": r"\+?\(?\d{2,3}\)?[ .-]\d{2,4}[ .-]?\d{3,4}",
       "api_key": r"\b(sk-[A-Za-z0-9]{32,}|AKIA[A-Z0-9]{16}|ghp_[A-Za-z0-9]{36})\b"}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    stats = write_raw_suite(CFG, str(out))
    lines = {f: (out / f).read_text(encoding="utf-8").splitlines() for f in stats["files"]}
    return stats, lines


def _to_example(row: dict, fmt: str) -> Example:
    if fmt == "sharegpt":
        q, a = row["conversations"][0]["value"], row["conversations"][1]["value"]
    else:
        q, a = row[CONTENT[fmt][0]], row[CONTENT[fmt][-1]]
    return Example(id=row["id"], instruction=q, response=a, domain=row["domain"],
                   difficulty=row["difficulty"], source=row["source"], metadata=row["metadata"])


@pytest.fixture(scope="module")
def rows(raw):
    stats, lines = raw
    bad = {(m["file"], m["line"]) for m in stats["malformed"]}
    out = []
    for name, file_lines in lines.items():
        fmt = name.removesuffix(".jsonl")
        for n, line in enumerate(file_lines, start=1):
            if (name, n) not in bad:
                row = json.loads(line)
                assert set(CONTENT[fmt]) | {"id", "domain", "difficulty", "source", "metadata"} \
                    == set(row), (name, n)
                out.append(_to_example(row, fmt))
    return out


def test_counts_match_the_configured_rates(raw, rows):
    stats, lines = raw
    n = 300
    assert stats["clean_rows"] == n
    assert stats["planted"] == {"exact_dup": 15, "near_dup": 15, "too_short": 6, "too_long": 6,
                                "non_english": 6, "pii": 6, "malformed": 6}
    assert stats["rows_written"] == sum(len(v) for v in lines.values()) == len(rows) + 6
    assert len(rows) == n + 15 + 15 + 6 * 3
    kinds = Counter(str(e.metadata.get("planted", "clean")).split(":")[0] for e in rows)
    assert kinds == {"clean": n - 6, "exact_dup_of": 15, "near_dup_of": 15, "pii": 6,
                     "too_short": 6, "too_long": 6, "non_english": 6}
    assert len({e.id for e in rows}) == len(rows)
    assert len(lines) == 4 and min(len(v) for v in lines.values()) > 50  # spread over formats


def test_writing_twice_is_byte_identical(raw, tmp_path):
    stats, lines = raw
    again = write_raw_suite(CFG, str(tmp_path))
    assert again == stats
    for name, file_lines in lines.items():
        assert (tmp_path / name).read_text(encoding="utf-8").splitlines() == file_lines


def test_duplicates_point_at_their_originals(rows):
    by_id = {e.id: e for e in rows}
    for e in rows:
        kind, _, orig = str(e.metadata.get("planted", "")).partition(":")
        if kind == "exact_dup_of":
            o = by_id[orig]
            assert (e.instruction, e.response) == (o.instruction, o.response)
        elif kind == "near_dup_of":
            o = by_id[orig]
            assert e.instruction != o.instruction and e.response == o.response
            assert similarity(e, o) >= 0.85
            assert e.metadata["near_dup_jaccard"] == round(similarity(e, o), 3)
            assert verify(e, e.response).passed  # still a valid task if curation keeps it


def test_junk_rows_are_what_they_claim(rows):
    for e in rows:
        kind, _, arg = str(e.metadata.get("planted", "")).partition(":")
        words = len(f"{e.instruction} {e.response}".split())
        if kind == "too_short":
            assert words <= 2
        elif kind == "too_long":
            assert words >= 1500
        elif kind == "pii":
            assert re.search(PII[arg], e.instruction), e.instruction
            assert not re.search(PII[arg], json.dumps(e.metadata))  # the value is not recorded
            if e.domain != "code":
                assert verify(e, e.response).passed
        elif not kind:
            assert not any(re.search(p, e.instruction + e.response) for p in PII.values()), e.id


def test_non_english_rows_are_detected_as_their_language(rows):
    langid = pytest.importorskip("py3langid.langid")
    ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    foreign = [e for e in rows if str(e.metadata.get("planted", "")).startswith("non_english")]
    assert foreign
    for e in foreign:
        lang, prob = ident.classify(f"{e.instruction}\n{e.response}")
        assert lang == e.metadata["planted"].split(":")[1] and prob >= 0.9, (e.instruction, lang)


def test_malformed_lines_really_are_malformed(raw):
    stats, lines = raw
    assert Counter(m["kind"] for m in stats["malformed"]) == Counter(
        {"truncated": 2, "not_object": 2, "missing_keys": 1, "not_json": 1})
    for m in stats["malformed"]:
        fmt = m["file"].removesuffix(".jsonl")
        line = lines[m["file"]][m["line"] - 1]
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            assert m["kind"] in ("truncated", "not_json")
            continue
        assert m["kind"] in ("not_object", "missing_keys"), (m, line)
        if isinstance(obj, dict):
            turns = obj.get("conversations")
            complete = all(k in obj for k in CONTENT[fmt]) and (
                fmt != "sharegpt" or (isinstance(turns, list) and len(turns) == 2))
            assert not complete, line


def test_rates_too_high_for_distinct_sources_fail_clearly(tmp_path):
    cfg = SuiteConfig(examples_per_domain=3, domains=["math"], exact_dup_rate=0.7,
                      near_dup_rate=0.7)
    with pytest.raises(ValueError, match="rates too high"):
        write_raw_suite(cfg, str(tmp_path))


def test_pii_rows_keep_their_clean_id_and_verifier_data(rows):
    clean = {e.id: e for e in generate_suite(CFG)}
    for e in rows:
        if str(e.metadata.get("planted", "")).startswith("pii:"):
            o = clean[e.id]
            assert o.instruction in e.instruction and e.response == o.response
            assert {k: v for k, v in e.metadata.items() if k != "planted"} == o.metadata
