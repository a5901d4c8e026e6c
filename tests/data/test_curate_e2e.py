"""End to end: generate the task suite (with its planted mess), add a few rows in other formats,
curate everything on a local Ray through the pipeline runner, then check that planted duplicates,
PII, junk and non-English rows are gone and that every input row is accounted for."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cogumi_ray.config import CogumiConfig
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.filters.pii import RULES
from cogumi_ray.data.schema import Example, arrow_schema
from cogumi_ray.data.split import split_sizes

SPLITS = ("train", "val", "test")
EXTRA_PII = ("Forward the invoice to lena.berg@example.org and call +1 (415) 555-0132 with "
             "key sk-proj-9fK2mQ7xR4tL8vB1nC6zW3yH5jD0pA2s so the vendor can confirm it.")


def write_extra_inputs(root: Path) -> None:
    """Formats the suite does not write: Parquet (Alpaca columns), ShareGPT with a system turn,
    a wrongly typed row, and a row with three kinds of PII."""
    alpaca = [
        {"instruction": "Summarise the paragraph in one sentence.",
         "input": "The river flooded the old mill twice last spring, so the town moved the market.",
         "output": "After two spring floods at the mill, the town moved its market."},
        {"instruction": "List three uses for a paper clip.", "input": "",
         "output": "Holding pages together, resetting a router, and marking a book page."},
    ]
    pq.write_table(pa.Table.from_pylist(alpaca), root / "alpaca_extra.parquet")
    lines = [
        json.dumps({"conversations": [
            {"from": "system", "value": "You are terse."},
            {"from": "human", "value": "Why do leaves change colour in autumn?"},
            {"from": "gpt", "value": "Chlorophyll breaks down and reveals other pigments."}]}),
        json.dumps({"prompt": "Explain what a queue is.", "response": 17}),
        json.dumps({"prompt": EXTRA_PII, "response": "I will send it and confirm with the vendor."}),
    ]
    (root / "extra.jsonl").write_text("".join(f"{line}\n" for line in lines))


def _json(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _rows(path: str) -> list[dict]:
    return pads.dataset(path, format="parquet").to_table().to_pylist()


def _planted(row: dict) -> tuple[str, str]:
    meta = row["metadata"]  # a JSON string in curated Parquet, an object in the raw suite
    meta = json.loads(meta) if isinstance(meta, str) else meta
    kind, _, arg = str(meta.get("planted", "")).partition(":")
    return kind, arg


@pytest.fixture(scope="module")
def curated(ray_session, tmp_path_factory):
    from cogumi_ray.data.suite.raw import write_raw_suite
    from cogumi_ray.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("curate_e2e")
    suite_stats = write_raw_suite(SuiteConfig(examples_per_domain=30), str(root / "suite"))
    write_extra_inputs(root)
    raw = [r for f in sorted((root / "suite").glob("*.jsonl"))
           for r in (json.loads(line) for line in f.read_text().splitlines() if _parses(line))
           if isinstance(r, dict)]
    cfg = CogumiConfig()
    cfg.run.root = str(root / "runs")
    cfg.curate.inputs = [str(root / "suite"), str(root / "alpaca_extra.parquet"),
                         str(root / "extra.jsonl")]
    out = run_pipeline(cfg, only=["curate"])["curate"]
    return {"out": out, "stats": suite_stats, "raw": raw, "cfg": cfg,
            "report": _json(out.outputs["report"]),
            "kept": [r for s in SPLITS for r in _rows(out.outputs[s])]}


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_counts_add_up(curated):
    report, stats = curated["report"], curated["stats"]
    b = report["balance"]
    assert b["rows_in"] == stats["rows_written"] + 2 + 3
    assert b["rows_in"] == b["quarantined"] + b["filtered"] + b["duplicates"] + b["rows_out"]
    assert b["quarantined"] == stats["malformed_lines"] + 1
    assert b["rows_out"] == len(curated["kept"])
    dd = report["dedup"]
    assert dd["exact_dropped"] + dd["near_dropped"] == b["duplicates"]
    planted = stats["planted"]
    assert b["duplicates"] == planted["exact_dup"] + planted["near_dup"]
    length, language, pii = report["filters"]
    assert (length["filter"], language["filter"], pii["filter"]) == ("length", "language", "pii")
    assert length["dropped"] == {"too_long": planted["too_long"], "too_short": planted["too_short"]}
    assert language["dropped"] == {"non_english": planted["non_english"]}
    assert language["rows_in"] == length["rows_out"] and pii["rows_in"] == language["rows_out"]
    assert pii["dropped"] == {}  # scrub mode keeps the rows
    suite_pii = Counter({k.split(":")[1]: v for k, v in stats["planted_detail"].items()
                         if k.startswith("pii:")})
    assert report["pii"] == dict(suite_pii + Counter(email=1, phone=1, api_key=1))
    metrics = curated["out"].metrics
    assert metrics["rows_out"] == b["rows_out"] and metrics["summary"].startswith(str(b["rows_in"]))


def test_planted_mess_is_gone(curated):
    kept = curated["kept"]
    ids = {r["id"] for r in kept}
    assert len(ids) == len(kept)
    pairs = [(r["id"], arg) for r in curated["raw"]
             for kind, arg in [_planted(r)] if kind in ("exact_dup_of", "near_dup_of")]
    assert len(pairs) == curated["stats"]["planted"]["exact_dup"] + curated["stats"]["planted"]["near_dup"]
    for dup, original in pairs:  # exactly one row of each planted pair survives
        assert (dup in ids) != (original in ids), (dup, original)
    junk = {r["id"] for r in curated["raw"]
            if _planted(r)[0] in ("too_short", "too_long", "non_english")}
    assert junk and not junk & ids
    for r in kept:
        for text in (r["instruction"], r["response"], r["metadata"]):
            for kind, pattern, ok, _ in RULES:
                hits = [m.group(0) for m in pattern.finditer(text) if ok is None or ok(m.group(0))]
                assert not hits, f"{kind} left in {r['id']}: {hits}"
    scrubbed = [r for r in kept if _planted(r)[0] == "pii"]
    assert len(scrubbed) == curated["stats"]["pii_rows"]  # scrubbed, not dropped
    assert all("[" in r["instruction"] for r in scrubbed)
    extra = next(r for r in kept if "invoice" in r["instruction"])
    assert "[EMAIL]" in extra["instruction"] and "[PHONE]" in extra["instruction"]
    assert "[API_KEY]" in extra["instruction"]


def test_outputs_have_schema_are_disjoint_and_stratified(curated):
    out, report = curated["out"], curated["report"]
    seen: dict[str, str] = {}
    strata: Counter = Counter()
    for split in SPLITS:
        files = pads.dataset(out.outputs[split], format="parquet").files
        assert files and all(pq.read_schema(p).remove_metadata() == arrow_schema() for p in files)
        rows = _rows(out.outputs[split])
        assert len(rows) == report["splits"][split]["rows"]
        for r in rows:
            assert r["id"] not in seen, f"{r['id']} in both {seen.get(r['id'])} and {split}"
            seen[r["id"]] = split
            strata[(r["domain"], r["difficulty"]), split] += 1
    for (stratum, split), n in strata.items():
        key = "/".join(stratum)
        assert report["splits"][split]["by_stratum"][key] == n
    for stratum in {s for s, _ in strata}:  # each stratum split in proportion
        total = sum(strata[stratum, s] for s in SPLITS)
        expected = split_sizes(total, 0.1, 0.15)
        assert tuple(strata[stratum, s] for s in SPLITS) == expected, stratum
    verifier_rows = [Example.from_row(r) for r in curated["kept"] if r["source"] == "cogumi_suite"]
    assert verifier_rows and all(e.metadata for e in verifier_rows)  # verifier data survives
    sources = {r["source"] for r in curated["kept"]}
    assert {"alpaca_extra", "extra", "cogumi_suite"} <= sources  # file name when a row has none


def test_quarantine_file_names_file_line_and_reason(curated):
    out, stats = curated["out"], curated["stats"]
    lines = [json.loads(s) for s in Path(out.outputs["quarantine"]).read_text().splitlines()]
    located = {(q["source_file"].rsplit("/", 1)[-1], q["line"]) for q in lines}
    assert {(m["file"], m["line"]) for m in stats["malformed"]} <= located
    extra = [q for q in lines if q["source_file"].endswith("extra.jsonl")]
    assert [(q["line"], q["reason"]) for q in extra] == [(2, "bad_type")]
    assert "response" in extra[0]["detail"]


def test_rerun_is_skipped_when_nothing_changed(curated):
    from cogumi_ray.pipeline import run_pipeline

    again = run_pipeline(curated["cfg"], only=["curate"])["curate"]
    assert again.skipped and again.outputs == curated["out"].outputs


def test_inputs_without_rows_fail_with_a_clear_error(ray_session, tmp_path):
    from cogumi_ray.data.curate import run
    from cogumi_ray.errors import DataError
    from cogumi_ray.runs import RunContext

    (tmp_path / "empty.jsonl").write_text("\n\n")
    cfg = CogumiConfig()
    with pytest.raises(DataError, match="hold no rows"):
        run(cfg, RunContext(str(tmp_path / "run")), {"source0": str(tmp_path / "empty.jsonl")})
