"""End to end: curate messy inputs on a local Ray through the pipeline runner, then check that
planted duplicates, PII and non-English rows are gone, and that every input row is accounted for."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import DIFFICULTIES, DOMAINS
from cogumi_ray.data.filters.pii import RULES
from cogumi_ray.data.schema import Example, arrow_schema

WORDS = str.split(
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government "
    "number night point home water room mother area money story fact month lot right study book "
    "eye job word business issue side kind head house service friend father power hour game line "
    "end member law car city community name president team minute idea kid body information back "
    "parent face others level office door health person art war history party result change "
    "morning reason research girl guy moment air teacher force education garden river bridge"
)
NON_ENGLISH = [
    ("Quelle est la meilleure façon d'apprendre une nouvelle langue rapidement ?",
     "Il faut pratiquer tous les jours avec des locuteurs natifs et lire beaucoup."),
    ("Schreiben Sie eine kurze Geschichte über einen Hund, der im Park spielt.",
     "Der Hund rannte fröhlich über die Wiese und jagte einen roten Ball."),
    ("¿Cuál es la diferencia entre una lista y una tupla en programación?",
     "Una lista se puede modificar, mientras que una tupla no se puede cambiar."),
]
PII = [
    "Send the weekly summary to maria.lopez@example.org before the meeting starts.",
    "Call the support line at +1 (415) 555-0132 and ask about the delayed order.",
    "Use the key sk-proj-9fK2mQ7xR4tL8vB1nC6zW3yH5jD0pA2s to query the service.",
]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _clean(rng: random.Random) -> list[Example]:
    out = []
    for domain in DOMAINS:
        for difficulty in DIFFICULTIES:
            for k in range(4):
                out.append(Example(
                    id=f"{domain}-{difficulty}-{k}",
                    instruction=f"Describe the {_sentence(rng, 14)}",
                    response=_sentence(rng, 18),
                    domain=domain, difficulty=difficulty, source="fixture",
                    metadata={"answer": k},
                ))
    return out


def write_messy_inputs(root) -> dict[str, list[str]]:
    """Fixture files in three formats with planted mess; returns the planted ids by kind."""
    rng = random.Random(0)
    clean = _clean(rng)
    rows = [e.to_row() for e in clean]
    planted: dict[str, list[str]] = {"exact_dup": [], "near_dup": [], "non_english": [], "pii": [],
                                     "length": [], "pairs": []}
    for i, src in enumerate(clean[:4]):  # verbatim copies under new ids
        planted["exact_dup"].append(f"xdup-{i}")
        planted["pairs"].append((f"xdup-{i}", src.id))
        rows.append({**src.to_row(), "id": f"xdup-{i}",
                     "metadata": json.dumps({"planted": f"exact_dup:{src.id}"})})
    for i, src in enumerate(clean[4:8]):  # whitespace/punctuation edits
        planted["near_dup"].append(f"ndup-{i}")
        planted["pairs"].append((f"ndup-{i}", src.id))
        text = src.instruction.replace(" ", "  ", 2).rstrip(".") + "!"
        rows.append({**src.to_row(), "id": f"ndup-{i}", "instruction": text,
                     "metadata": json.dumps({"planted": f"near_dup:{src.id}"})})
    for i, (q, a) in enumerate(NON_ENGLISH):
        planted["non_english"].append(f"lang-{i}")
        rows.append(Example(f"lang-{i}", q, a, metadata={"planted": "non_english"}).to_row())
    for i, q in enumerate(PII):
        planted["pii"].append(f"pii-{i}")
        rows.append(Example(f"pii-{i}", q, _sentence(rng, 10), metadata={"planted": "pii"}).to_row())
    planted["length"] = ["short-0", "long-0"]
    rows.append(Example("short-0", "Hi", "ok").to_row())
    rows.append(Example("long-0", _sentence(rng, 1500), "Fine.").to_row())
    (root / "suite").mkdir()
    with open(root / "suite" / "part-0.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps({**row, "metadata": json.loads(row["metadata"])}) + "\n")
        f.write('{"instruction": "unterminated\n')
        f.write("[1, 2, 3]\n")
        f.write(json.dumps({"instruction": "No answer here.", "response": 42}) + "\n")
    sharegpt = [{"conversations": [{"from": "human", "value": f"Explain the {_sentence(rng, 12)}"},
                                   {"from": "gpt", "value": _sentence(rng, 15)}]} for _ in range(3)]
    (root / "sharegpt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sharegpt))
    alpaca = [{"instruction": f"Summarise the {_sentence(rng, 12)}", "input": _sentence(rng, 6),
               "output": _sentence(rng, 15)} for _ in range(3)]
    pq.write_table(pa.Table.from_pylist(alpaca), root / "alpaca.parquet")
    return planted


def _json(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _read_split(path: str) -> list[dict]:
    return pads.dataset(path, format="parquet").to_table().to_pylist()


@pytest.fixture(scope="module")
def curated(ray_session, tmp_path_factory):
    from cogumi_ray.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("curate_e2e")
    planted = write_messy_inputs(root)
    cfg = CogumiConfig()
    cfg.run.root = str(root / "runs")
    cfg.curate.inputs = [str(root / "suite"), str(root / "sharegpt.jsonl"), str(root / "alpaca.parquet")]
    out = run_pipeline(cfg, only=["curate"])["curate"]
    return out, planted, cfg


def test_counts_add_up(curated):
    out, _, _ = curated
    report = _json(out.outputs["report"])
    b = report["balance"]
    assert b["rows_in"] == 60 + 4 + 4 + 3 + 3 + 2 + 3 + 3 + 3  # clean + mess + malformed + formats
    assert b["rows_in"] == b["quarantined"] + b["filtered"] + b["duplicates"] + b["rows_out"]
    assert b["quarantined"] == 3
    dd = report["dedup"]
    assert dd["exact_dropped"] + dd["near_dropped"] == b["duplicates"]
    assert [f["filter"] for f in report["filters"]] == ["length", "language", "pii"]
    length, language, pii = report["filters"]
    assert length["dropped"] == {"too_long": 1, "too_short": 1}
    assert language["rows_in"] == length["rows_out"] and pii["rows_in"] == language["rows_out"]
    assert language["dropped"] == {"non_english": 3}
    assert report["pii"] == {"api_key": 1, "email": 1, "phone": 1}
    assert out.metrics["rows_out"] == b["rows_out"] and out.metrics["summary"].startswith(str(b["rows_in"]))


def test_outputs_have_schema_and_splits_are_disjoint_and_stratified(curated):
    out, _, _ = curated
    report = _json(out.outputs["report"])
    seen: dict[str, str] = {}
    for split in ("train", "val", "test"):
        files = [p for p in pads.dataset(out.outputs[split], format="parquet").files]
        assert files and all(pq.read_schema(p).remove_metadata() == arrow_schema() for p in files)
        rows = _read_split(out.outputs[split])
        assert len(rows) == report["splits"][split]["rows"]
        for r in rows:
            assert r["id"] not in seen, f"{r['id']} in {seen.get(r['id'])} and {split}"
            seen[r["id"]] = split
    assert len(seen) == report["balance"]["rows_out"]
    # 4 clean rows per stratum (minus removed duplicates): test gets round(n * 0.15) = 1 of 4.
    assert report["splits"]["test"]["by_stratum"]["code/easy"] == 1
    sources = {Example.from_row(r).source for split in ("train", "val", "test")
               for r in _read_split(out.outputs[split])}
    assert sources == {"fixture", "unknown", "sharegpt", "alpaca"}  # file name when absent


def test_planted_mess_is_gone(curated):
    out, planted, _ = curated
    rows = [r for split in ("train", "val", "test") for r in _read_split(out.outputs[split])]
    ids = {r["id"] for r in rows}
    assert not ids & set(planted["non_english"] + planted["length"])
    texts = {(r["instruction"], r["response"]) for r in rows}
    assert len(texts) == len(rows)  # no exact duplicates survive
    for dup, original in planted["pairs"]:  # exactly one row of each planted pair survives
        assert (dup in ids) != (original in ids), (dup, original)
    for r in rows:
        for text in (r["instruction"], r["response"], r["metadata"]):
            for kind, pattern, ok, _ in RULES:
                hits = [m.group(0) for m in pattern.finditer(text) if ok is None or ok(m.group(0))]
                assert not hits, f"{kind} left in {r['id']}: {hits}"
    scrubbed = [r for r in rows if r["id"].startswith("pii-")]
    assert len(scrubbed) == 3 and any("[EMAIL]" in r["instruction"] for r in scrubbed)


def test_quarantine_file_names_file_line_and_reason(curated):
    out, _, _ = curated
    lines = [json.loads(s) for s in Path(out.outputs["quarantine"]).read_text().splitlines()]
    assert [(q["line"], q["reason"]) for q in lines] == [
        (77, "bad_json"), (78, "not_object"), (79, "bad_type")]
    assert all(q["source_file"].endswith("suite/part-0.jsonl") for q in lines)
    assert "response" in lines[2]["detail"]


def test_rerun_is_skipped_when_nothing_changed(curated):
    from cogumi_ray.pipeline import run_pipeline

    out, _, cfg = curated
    again = run_pipeline(cfg, only=["curate"])["curate"]
    assert again.skipped and again.outputs == out.outputs
