"""The run report (cogumi_ray.reports): a synthetic run built through RunContext, with a finished,
a failed, a missing and a malformed stage; the numbers in report.html / report.md must be the
ones in the stage files, the HTML must be self-contained, and headless Chromium must render it."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cogumi_ray.runs import RunContext, StageOutput

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]

CURATE_REPORT = {
    "balance": {"rows_in": 1000, "quarantined": 40, "filtered": 60, "duplicates": 100, "rows_out": 800},
    "quarantine_reasons": {"bad_json": 40},
    "filters": [
        {"filter": "length", "rows_in": 960, "rows_out": 910, "dropped": {"too_long": 30, "too_short": 20},
         "counts": {}},
        {"filter": "language", "rows_in": 910, "rows_out": 900, "dropped": {"non_english": 10},
         "counts": {}},
    ],
    "dedup": {"rows_in": 900, "rows_out": 800, "exact_dropped": 70, "near_dropped": 30, "clusters": 25,
              "exact_clusters": 70, "candidate_pairs": 321, "verified_pairs": 31,
              "cluster_examples": [
                  {"kept": "math-1", "kind": "exact", "size": 2,
                   "members": [{"id": "math-1", "snippet": "What is 2 + 2?\n4"},
                               {"id": "math-1-dup", "snippet": "What is 2 + 2?\n4"}]},
                  {"kept": "gen-7", "kind": "near", "size": 2,
                   "members": [{"id": "gen-7", "snippet": "Capital of Peru?\nLima"},
                               {"id": "gen-7-near", "snippet": "Capital of  Peru? \nLima"}]}]},
    "splits": {"train": {"rows": 780, "by_domain": {"math": 400, "code": 380}},
               "test": {"rows": 20, "by_domain": {"math": 10, "code": 10}}},
}
# 8 held-out items: math easy 2/2, math hard 0/2, code easy 1/2, code hard 0/2 -> 3/8.
ITEMS = [("math", "easy", True), ("math", "easy", True), ("math", "hard", False), ("math", "hard", False),
         ("code", "easy", True), ("code", "easy", False), ("code", "hard", False), ("code", "hard", False)]
SCORE = {"pass_rate": 0.375, "passed": 3, "total": 8, "pass_rate.math": 0.5, "total.math": 4,
         "pass_rate.code": 0.25, "total.code": 4, "pass_rate.easy": 0.75, "total.easy": 4,
         "pass_rate.hard": 0.0, "total.hard": 4}
VARIANTS = [
    {"name": "dense/hf", "branch": "dense", "kind": "hf", "size_bytes": 10493112, "packed_bytes": 8791286,
     "perplexity": 1.6776, "pass_rate": 0.4, "extra": {"passed": 4, "total": 10}},
    {"name": "dense/Q4_K_M", "branch": "dense", "kind": "gguf", "size_bytes": 1733312,
     "packed_bytes": 1661992, "perplexity": 1.6796, "pass_rate": 0.3, "gen_tok_s": 4644.5,
     "extra": {"passed": 3, "total": 10}},
]


def _write_json(path: Path, obj: object) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _items_parquet(path: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "benchmark": ["suite"] * len(ITEMS), "id": [f"x{i}" for i in range(len(ITEMS))],
        "passed": [p for _, _, p in ITEMS],
        "group": [json.dumps({"domain": d, "difficulty": f}) for d, f, _ in ITEMS],
    }), path)
    return str(path)


def _trainer_state(stage_dir: Path) -> None:
    history = [{"step": s, "loss": 6.0 / s} for s in range(1, 11)]
    history += [{"step": 5, "eval_loss": 1.5}, {"step": 10, "eval_loss": 0.9}]
    _write_json(stage_dir / "checkpoints" / "train_base" / "checkpoint_000" / "checkpoint"
                / "trainer_state.json", {"global_step": 10, "log_history": history})


def make_run(root: Path) -> str:
    """A run whose manifest is written by RunContext.run_stage, as the pipeline writes it."""
    ctx = RunContext(str(root / "synthetic"), name="synthetic")

    def stage(name: str, fn) -> None:
        ctx.run_stage(name, fn, config={"stage": name})

    def curate() -> StageOutput:
        p = _write_json(Path(ctx.stage_dir("curate")) / "report.json", CURATE_REPORT)
        return StageOutput({"report": p}, {"rows_in": 1000, "rows_out": 800})

    def train_base() -> StageOutput:
        d = Path(ctx.stage_dir("train_base"))
        _trainer_state(d)
        (d / "model").mkdir(exist_ok=True)
        return StageOutput({"model": str(d / "model")},
                           {"steps": 10, "train_loss": 0.6, "eval_loss": 0.9, "tokens_per_s": 1234.5})

    def eval_base() -> StageOutput:
        d = Path(ctx.stage_dir("eval_base"))
        return StageOutput({"score": _write_json(d / "score.json", SCORE),
                            "items": _items_parquet(d / "items.parquet")}, dict(SCORE))

    def failures() -> StageOutput:  # a truncated file, as a crash mid-write would leave it
        p = Path(ctx.stage_dir("failures")) / "report.json"
        p.write_text('{"failures": 12, "clusters": [')
        return StageOutput({"report": str(p)}, {"failures": 12})

    def compress() -> StageOutput:
        d = Path(ctx.stage_dir("compress"))
        _write_json(d / "variants.json", VARIANTS)
        rep = _write_json(d / "report.json", {"variants": VARIANTS, "chosen": "dense/Q4_K_M"})
        return StageOutput({"report": rep}, {"chosen": "dense/Q4_K_M", "dense_q4_k_m.size_mb": 1.653})

    def modifiers() -> StageOutput:
        raise RuntimeError("adapter training diverged")

    for name, fn in (("curate", curate), ("train_base", train_base), ("eval_base", eval_base),
                     ("failures", failures), ("compress", compress)):
        stage(name, fn)
    with pytest.raises(RuntimeError):
        stage("modifiers", modifiers)
    return ctx.run_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[str, str, str]:
    from cogumi_ray.reports import build_report

    run_dir = make_run(tmp_path_factory.mktemp("report"))
    html_path, md_path = build_report(run_dir)
    return run_dir, html_path, md_path


def test_html_has_the_measured_numbers(report):
    _, html_path, _ = report
    html = Path(html_path).read_text()
    assert "37.5% (3/8)" in html  # base pass rate, score.json
    assert "100.0% (2/2)" in html and "50.0% (1/2)" in html  # math/easy, code/easy cells
    assert "1.653 MiB" in html and "10.007 MiB" in html  # variant sizes, variants.json
    assert "30.0% (3/10)" in html  # a variant's pass rate
    for n in ("1,000", "960", "910", "800"):  # funnel rows in/out, curate/report.json
        assert f">{n}<" in html
    assert "math-1-dup" in html  # a duplicate-cluster example
    assert "1234" in html  # training throughput from the manifest


def test_html_is_self_contained_with_png_figures(report):
    import matplotlib.image as mpimg

    html = Path(report[1]).read_text()
    assert 'src="http' not in html and 'href="http' not in html
    assert "<script" not in html and "<link" not in html
    blobs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(blobs) >= 4  # funnel, loss curve, heatmap, waterfall, timings
    for b in blobs:
        png = base64.b64decode(b)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert mpimg.imread(io.BytesIO(png), format="png").size > 0


def test_markdown_has_same_tables_and_assets(report):
    run_dir, _, md_path = report
    md = Path(md_path).read_text()
    for value in ("37.5% (3/8)", "50.0% (1/2)", "1.653 MiB", "30.0% (3/10)", "1,000"):
        assert value in md
    refs = re.findall(r"\]\((report_assets/[^)]+\.png)\)", md)
    assert refs
    for ref in refs:
        assert (Path(run_dir) / ref).read_bytes().startswith(b"\x89PNG")


def test_missing_failed_and_malformed_stages(report):
    _, html_path, md_path = report
    for text in (Path(html_path).read_text(), Path(md_path).read_text()):
        assert "distill: not run" in text
        assert "modifiers: not run to completion" in text and "adapter training diverged" in text
        assert "failures/report.json is not valid JSON" in text
    html = Path(html_path).read_text()
    assert 'class="warnings"' in html
    assert 'id="router"' not in html  # no router stage: no section at all


def test_main_prints_paths_and_fails_cleanly_without_a_run(report, tmp_path, capsys):
    from cogumi_ray.reports import main

    assert main(report[0]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "report.md" in out
    assert main(str(tmp_path / "nothing")) == 1
    assert "no manifest.json" in capsys.readouterr().err


def test_chromium_renders_the_report(report, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("install Debian's chromium (make test installs it)")
    import matplotlib.image as mpimg

    shot = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           Path(report[1]).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert shot.stat().st_size > 20_000
    pixels = mpimg.imread(str(shot))
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # not a blank page
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(shot, artifacts / "report.png")


def test_a_section_that_crashes_becomes_a_warning(report, monkeypatch, tmp_path):
    from cogumi_ray.reports import build

    run_dir = shutil.copytree(report[0], tmp_path / "run")  # leave the shared run's report alone

    def broken(run):
        raise KeyError("boom")

    monkeypatch.setattr(build, "SECTIONS", (("Data funnel", broken), *build.SECTIONS[1:]))
    html_path, _ = build.build_report(str(run_dir))
    html = Path(html_path).read_text()
    assert "section &#x27;Data funnel&#x27; could not be built" in html
    assert "37.5% (3/8)" in html  # the other sections are still there


def _routekit():
    """tests/route/routekit.py (its folder is on sys.path only when tests/route is collected)."""
    import importlib.util
    import sys

    if "routekit" not in sys.modules:
        spec = importlib.util.spec_from_file_location("routekit", REPO / "tests" / "route" / "routekit.py")
        assert spec is not None and spec.loader is not None
        sys.modules["routekit"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["routekit"])
    return sys.modules["routekit"]


def _hashed_embed(texts: list[str], fc: object):
    """Bag of words with one fixed random vector per word: a stand-in for MiniLM that still
    separates routekit's domains and its hard suffixes, in milliseconds."""
    import zlib

    import numpy as np

    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace(".", " ").replace(",", " ").split():
            out[i] += np.random.default_rng(zlib.crc32(w.encode())).normal(size=64)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def router_run(tmp_path_factory) -> tuple[str, dict, str, str]:
    """A run whose router stage really ran (route.stage.train_stage on routekit's labelled rows),
    so report.json has the shape the stage writes."""
    from cogumi_ray.reports import build_report
    from cogumi_ray.route import features
    from cogumi_ray.route.config import EscalationConfig, FeatureConfig, RouterConfig
    from cogumi_ray.route.stage import train_stage

    kit = _routekit()
    d = tmp_path_factory.mktemp("router_report")
    val, test = kit.make_rows(180, 1, "v"), kit.make_rows(90, 2, "t")
    inputs = {"scores": str(d / "scores.parquet"), "val": str(d / "val.parquet"),
              "test": str(d / "test.parquet")}
    kit.write_split(inputs["val"], val)
    kit.write_split(inputs["test"], test)
    kit.write_scores(inputs["scores"], {"val": val, "test": test})
    rc = RouterConfig(routers=["logreg", "knn"], cv_folds=3, features=FeatureConfig(pca_dims=16),
                      escalation=EscalationConfig(per_class=50))
    ctx = RunContext(str(d / "run"), name="routed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(features, "embed", _hashed_embed)
        out = ctx.run_stage("router", lambda: train_stage(rc, ctx.stage_dir("router"), inputs),
                            {"route": rc.model_dump(mode="json")})
    rep = json.loads(Path(out.outputs["report"]).read_text())
    html_path, md_path = build_report(ctx.run_dir)
    return ctx.run_dir, rep, Path(html_path).read_text(), Path(md_path).read_text()


def test_router_section_reads_the_stage_report(router_run):
    from cogumi_ray.reports.fmt import num, pct

    run_dir, rep, html, md = router_run
    chosen = rep["routers"][rep["chosen"]]
    cm = chosen["classification"]["confusion"]
    assert sum(map(sum, cm["matrix"])) == rep["rows"]["test"]
    for label, row in zip(cm["labels"], cm["matrix"], strict=True):  # every cell, in both files
        assert "| " + " | ".join([label, *[num(v) for v in row]]) + " |" in md
        assert f"<td>{label}</td>" + "".join(f'<td class="n">{num(v)}</td>' for v in row) in html
    rt = chosen["routing"]
    assert f"| {num(rt['apgr'])} | {pct(rt['cpt50'])} | {pct(rt['cpt80'])} |" in md
    for name, r in rep["routers"].items():  # the comparison table has every router's APGR
        cells = f"| {name}{' (chosen)' if name == rep['chosen'] else ''} | " \
                f"{pct(r['classification']['accuracy'])} |"
        assert cells in md and num(r["routing"]["apgr"]) in md
    cls = chosen["classification"]
    for text in (html, md):
        assert pct(cls["majority_accuracy"]) in text and pct(chosen["anchors"]["oracle"]) in text
        assert num(cls["ece_uncalibrated"]) in text and num(cls["ece"]) in text
        for o, v in cls["per_class"].items():
            assert pct(v["precision"]) in text and pct(v["recall"]) in text, o
    assets = Path(run_dir) / "report_assets"
    for png in ("router_confusion.png", "router_quality_cost.png", "router_routing.png"):
        assert (assets / png).read_bytes().startswith(b"\x89PNG"), png
    # the stage's threshold table, one row per setting (no compress inputs: trained without
    # the base's confidence, which the small table says)
    shown = _table_after(md, THRESHOLDS_CAPTION)
    assert len(shown) == len(rep["thresholds"])
    i, conf = next((i, r) for i, r in enumerate(rep["thresholds"])
                   if r["policy"] == "progressive" and r["configured"])
    setting = ", ".join(f"{num(t)} at {k}" for t, k in zip(conf["thresholds"], conf["steps"], strict=True))
    assert shown[i].startswith(f"| progressive (configured) | {setting} | +0 | {pct(conf['pass_rate'])} | "
                               f"{pct(conf['modifier_share'])} | {num(conf['mean_cost'])} |")
    assert _table_after(md, CONFIDENCE_CAPTION)[0].startswith(
        f"| without base confidence | {rep['base_confidence']['variants']['without']['router']} |")


DEMO_ANSWERS = [  # serve/demo_answers.json as `cogumi demo` writes it (DemoAnswer fields)
    {"label": "code", "question": "Write a Python function add_3(x) that returns x + 3.",
     "answer": "def add_3(x): return x + 3", "option": "code", "confidence": 0.912, "passed": True,
     "seconds": 1.2345, "first_token_seconds": 0.0871},
    {"label": "math", "question": "What is 48 + 17?", "answer": "64", "option": "base",
     "confidence": 0.64, "passed": False, "seconds": 0.4321, "first_token_seconds": 0.0512},
    {"label": "math follow-up", "question": "that's wrong", "answer": "65", "option": "math",
     "confidence": None, "passed": True, "seconds": 0.777},  # a file from before first tokens
]


def test_serving_section_shows_the_demo_queries(report, tmp_path):
    from cogumi_ray.reports import build_report

    run_dir = shutil.copytree(report[0], tmp_path / "run")
    _write_json(run_dir / "serve" / "demo_answers.json", DEMO_ANSWERS)
    html_path, md_path = build_report(str(run_dir))
    md, html = Path(md_path).read_text(), Path(html_path).read_text()
    assert "| code | Write a Python function add_3(x) that returns x + 3. | code | 0.912 | pass | " \
           "87 ms | 1,234 ms |" in md
    assert "| math | What is 48 + 17? | base | 0.64 | fail | 51 ms | 432 ms |" in md
    assert "| math follow-up | that's wrong | math | – | pass | – | 777 ms |" in md
    assert "**median latency:** 777 ms (slowest 1,234 ms)" in md
    assert "**verifier passed:** 2/3" in md
    assert 'id="serving"' in html and "1,234 ms" in html and "0.912" in html


def test_no_serving_section_without_demo_answers_or_serving_stage(report):
    assert 'id="serving"' not in Path(report[1]).read_text()


# Held-out verdicts per option (base, math, code) and the router's choice for each row:
#   base:  math easy 1/2, math hard 0/2, code easy 1/2, code hard 0/2 -> 2/8
#   math:  math easy 2/2, math hard 1/2, code easy 0/2, code hard 0/2 -> 3/8
#   code:  math easy 0/2, math hard 0/2, code easy 1/2, code hard 1/2 -> 2/8
#   routed: math easy 2/2, math hard 0/2, code easy 1/2, code hard 1/2 -> 4/8
#   oracle: math easy 2/2, math hard 1/2, code easy 1/2, code hard 1/2 -> 5/8
HELD_OUT = [  # id, domain, difficulty, {option: passed}, routed option
    ("q0", "math", "easy", {"base": True, "math": True, "code": False}, "base"),
    ("q1", "math", "easy", {"base": False, "math": True, "code": False}, "math"),
    ("q2", "math", "hard", {"base": False, "math": False, "code": False}, "math"),
    ("q3", "math", "hard", {"base": False, "math": True, "code": False}, "base"),
    ("q4", "code", "easy", {"base": True, "math": False, "code": True}, "code"),
    ("q5", "code", "easy", {"base": False, "math": False, "code": False}, "base"),
    ("q6", "code", "hard", {"base": False, "math": False, "code": True}, "code"),
    ("q7", "code", "hard", {"base": False, "math": False, "code": False}, "code"),
]


# The router stage's `thresholds` and `base_confidence` (route.stage) for the fixture run.
THRESHOLDS = [
    {"policy": "progressive", "configured": False, "offset": 0.1, "steps": [3, 4, 5],
     "thresholds": [0.95, 0.85, 0.75], "pass_rate": 0.25, "modifier_share": 0.0, "mean_cost": 1.0,
     "switches": {"3": 0.0, "4": 0.0, "5": 0.0}},
    {"policy": "progressive", "configured": True, "offset": 0.0, "steps": [3, 4, 5],
     "thresholds": [0.85, 0.75, 0.65], "pass_rate": 0.375, "modifier_share": 0.25,
     "mean_cost": 1.2675, "switches": {"3": 0.125, "4": 0.0, "5": 0.125}},
    {"policy": "cut", "configured": True, "cut": 0.5, "decided_after": 0, "pass_rate": 0.5,
     "modifier_share": 0.625, "mean_cost": 1.625, "switches": {"0": 0.625}},
    {"policy": "cut", "configured": False, "cut": 0.5, "decided_after": 5, "pass_rate": 0.625,
     "modifier_share": 0.5, "mean_cost": 1.525, "switches": {"5": 0.5}},
]
BASE_CONFIDENCE = {
    "used": True, "mode": "auto", "first_tokens": 5,
    "confidence": {"source": "gguf", "ks": [3, 4, 5], "mean": {"3": 0.2054, "4": 0.2102, "5": 0.2135}},
    "variants": {
        "with": {"router": "knn", "val_nll": {"knn": -0.322, "logreg": -0.3572},
                 "test": {"accuracy": 0.8829, "nll": 0.4485, "apgr": 0.4284}},
        "without": {"router": "logreg", "val_nll": {"knn": -0.3301, "logreg": -0.3222},
                    "test": {"accuracy": 0.875, "nll": 0.45, "apgr": 0.4395}}}}
THRESHOLDS_CAPTION = "Threshold settings on the held-out rows"
CONFIDENCE_CAPTION = "Base confidence feature: the routers trained with and without"


def _scores_parquet(path: Path) -> str:
    """scores.parquet as the modifiers stage writes it; a validation row that passes everywhere
    must not leak into the held-out tables."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"split": "test", "id": q, "domain": d, "difficulty": f, "option": o, "passed": ok,
             "reason": ""} for q, d, f, verdicts, _ in HELD_OUT for o, ok in verdicts.items()]
    rows += [{"split": "val", "id": "v0", "domain": "math", "difficulty": "hard", "option": o,
              "passed": True, "reason": ""} for o in ("base", "math", "code")]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _md_table(md: str, caption: str) -> list[str]:
    """The rows of the Markdown table under `caption` (header and alignment lines dropped)."""
    lines = md.splitlines()
    start = lines.index(f"*{caption}*") + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start + 2:end]


@pytest.fixture(scope="module")
def routed_run(tmp_path_factory) -> tuple[str, str, str]:
    from cogumi_ray.reports import build_report

    ctx = RunContext(str(tmp_path_factory.mktemp("routed") / "run"), name="routed")

    def modifiers() -> StageOutput:
        p = _scores_parquet(Path(ctx.stage_dir("modifiers")) / "scores.parquet")
        return StageOutput({"scores": p}, {"domains": ["math", "code"], "flagged": []})

    def router(routed: bool) -> StageOutput:
        rep = {"chosen": "knn", "options": ["base", "code", "math"], "rows": {"test": 8},
               "select_by": "nll", "policy": {"kind": "cut"},
               "routers": {"knn": {"operating_point": {"pass_rate": 0.5}}},
               "thresholds": THRESHOLDS, "base_confidence": BASE_CONFIDENCE}
        if routed:
            rep["routed"] = {"router": "knn", "policy": "cut", "split": "test",
                             "option": {q: o for q, *_, o in HELD_OUT}}
        return StageOutput({"report": _write_json(Path(ctx.stage_dir("router")) / "report.json", rep)},
                           {"router": "knn"})

    ctx.run_stage("modifiers", modifiers, config={"stage": "modifiers"})
    ctx.run_stage("router", lambda: router(True), config={"stage": "router"})
    html_path, md_path = build_report(ctx.run_dir)
    return ctx.run_dir, Path(html_path).read_text(), Path(md_path).read_text()


GRID = "pass rate per domain × difficulty"


def test_per_modifier_domain_by_difficulty_tables(routed_run):
    _, html, md = routed_run
    assert _md_table(md, f"Base (test split): {GRID}") == [
        "| code | 50.0% (1/2) | 0.0% (0/2) | 25.0% (n=4) |",
        "| math | 50.0% (1/2) | 0.0% (0/2) | 25.0% (n=4) |",
        "| all | 50.0% (n=4) | 0.0% (n=4) | 25.0% (2/8) |"]
    assert _md_table(md, f"Base + code adapter (test split): {GRID}") == [
        "| code | 50.0% (1/2) | 50.0% (1/2) | 50.0% (n=4) |",
        "| math | 0.0% (0/2) | 0.0% (0/2) | 0.0% (n=4) |",
        "| all | 25.0% (n=4) | 25.0% (n=4) | 25.0% (2/8) |"]
    assert _md_table(md, f"Base + math adapter (test split): {GRID}") == [
        "| code | 0.0% (0/2) | 0.0% (0/2) | 0.0% (n=4) |",
        "| math | 100.0% (2/2) | 50.0% (1/2) | 75.0% (n=4) |",
        "| all | 50.0% (n=4) | 25.0% (n=4) | 37.5% (3/8) |"]
    assert f"Base + math adapter (test split): {GRID}" in html and "37.5% (3/8)" in html


def test_routed_and_oracle_domain_by_difficulty_tables(routed_run):
    run_dir, html, md = routed_run
    assert _md_table(md, f"Routed (test split): {GRID}") == [
        "| code | 50.0% (1/2) | 50.0% (1/2) | 50.0% (n=4) |",
        "| math | 100.0% (2/2) | 0.0% (0/2) | 50.0% (n=4) |",
        "| all | 75.0% (n=4) | 25.0% (n=4) | 50.0% (4/8) |"]
    assert _md_table(md, f"Oracle (test split): {GRID}") == [
        "| code | 50.0% (1/2) | 50.0% (1/2) | 50.0% (n=4) |",
        "| math | 100.0% (2/2) | 50.0% (1/2) | 75.0% (n=4) |",
        "| all | 75.0% (n=4) | 50.0% (n=4) | 62.5% (5/8) |"]
    assert f"Routed (test split): {GRID}" in html and "62.5% (5/8)" in html
    assert (Path(run_dir) / "report_assets" / "routed_pass_rates.png").read_bytes().startswith(b"\x89PNG")


def _table_after(md: str, caption_start: str) -> list[str]:
    caption = next(line for line in md.splitlines() if line.startswith("*" + caption_start))
    return _md_table(md, caption[1:-1])


def test_router_threshold_settings_and_base_confidence_tables(routed_run):
    _, html, md = routed_run
    assert _table_after(md, THRESHOLDS_CAPTION) == [
        "| progressive | 0.95 at 3, 0.85 at 4, 0.75 at 5 | +0.1 | 25.0% | 0.0% | 1 | "
        "0.0% after 3, 0.0% after 4, 0.0% after 5 |",
        "| progressive (configured) | 0.85 at 3, 0.75 at 4, 0.65 at 5 | +0 | 37.5% | 25.0% | 1.268 | "
        "12.5% after 3, 0.0% after 4, 12.5% after 5 |",
        "| cut (configured) | cut 0.5, before generation | – | 50.0% | 62.5% | 1.625 | 62.5% after 0 |",
        "| cut | cut 0.5, after 5 base tokens | – | 62.5% | 50.0% | 1.525 | 50.0% after 5 |"]
    assert "the served policy is 'cut'" in md
    assert _table_after(md, CONFIDENCE_CAPTION) == [
        "| with base confidence | knn | -0.322 | 88.3% | 0.4485 | 0.4284 | kept |",
        "| without base confidence | logreg | -0.3222 | 87.5% | 0.45 | 0.4395 | – |"]
    assert "read after 5 base tokens" in md
    assert "0.2054 after 3, 0.2102 after 4, 0.2135 after 5" in md
    for text in (THRESHOLDS_CAPTION, CONFIDENCE_CAPTION, "progressive (configured)", "1.268", "-0.3222"):
        assert text in html, text


def test_routed_tables_say_what_is_missing(routed_run, tmp_path):
    """A router report without per-row choices, then a run without scores.parquet: notes, no crash."""
    from cogumi_ray.reports import build_report

    run_dir = shutil.copytree(routed_run[0], tmp_path / "run")
    manifest = run_dir / "manifest.json"  # recorded outputs are absolute: point them at the copy
    manifest.write_text(manifest.read_text().replace(str(Path(routed_run[0]).resolve()), str(run_dir)))
    report_json = run_dir / "router" / "report.json"
    rep = json.loads(report_json.read_text())
    del rep["routed"], rep["thresholds"], rep["base_confidence"]  # a report from before them
    report_json.write_text(json.dumps(rep))
    md = Path(build_report(str(run_dir))[1]).read_text()
    assert "records no routed option per held-out row" in md
    assert THRESHOLDS_CAPTION not in md and CONFIDENCE_CAPTION not in md
    assert f"*Routed (test split): {GRID}*" not in md
    assert f"*Oracle (test split): {GRID}*" in md  # the scores alone still give the oracle
    (run_dir / "modifiers" / "scores.parquet").unlink()
    md = Path(build_report(str(run_dir))[1]).read_text()
    assert "router: no scores.parquet" in md
    assert "modifiers: no scores.parquet, so no pass rates per domain × difficulty" in md
    assert "could not be built" not in md


def test_router_stage_records_the_routed_option_per_held_out_row(router_run):
    """The stage's `routed` rows, joined with scores.parquet by the report, give back the pass
    rate of the chosen router's operating point (the table's 'all' cell)."""
    _, rep, html, md = router_run
    routed, n = rep["routed"], rep["rows"]["test"]
    assert routed["router"] == rep["chosen"] and routed["split"] == "test" and len(routed["option"]) == n
    assert set(routed["option"].values()) <= set(rep["options"])
    op = rep["routers"][rep["chosen"]]["operating_point"]
    share = {o: round(list(routed["option"].values()).count(o) / n, 4) for o in rep["options"]}
    assert share == op["distribution"]
    passed = round(op["pass_rate"] * n)
    assert abs(passed / n - op["pass_rate"]) < 1e-4
    all_row = _md_table(md, f"Routed (test split): {GRID}")[-1]
    assert all_row.startswith("| all |") and all_row.endswith(f"| {100 * passed / n:.1f}% ({passed}/{n}) |")
    assert f"Oracle (test split): {GRID}" in html
