"""Failure analysis: KMeans with k by silhouette, TF-IDF labels, and the stage end to end on Ray
Data with the bundled sentence-embedding model (planted failure modes must be recovered)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from sklearn.metrics import adjusted_rand_score

from cogumi_ray.config import CogumiConfig
from cogumi_ray.errors import DataError
from cogumi_ray.failures.config import FailuresConfig
from cogumi_ray.failures.kmeans import cluster
from cogumi_ray.failures.label import cluster_terms
from cogumi_ray.failures.report import build_report, markdown
from cogumi_ray.pipeline import run_pipeline

# --- clustering and labels on their own (no model) -------------------------------------------


def blobs(sizes: list[int], dim: int = 16, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * 5
    x = np.concatenate([c + rng.normal(scale=0.3, size=(n, dim))
                        for c, n in zip(centres, sizes, strict=True)])
    return x, [i for i, n in enumerate(sizes) for _ in range(n)]


def test_silhouette_finds_planted_k_and_numbers_clusters_by_size():
    x, truth = blobs([12, 30, 20])
    c = cluster(x, k=None, k_min=2, k_max=8, seed=0, sample=5000)
    assert c.k == 3 and c.selection == "silhouette"
    assert set(c.silhouette) == set(range(2, 9)) and c.best_silhouette == max(c.silhouette.values())
    assert adjusted_rand_score(truth, c.labels) == 1.0
    sizes = [c.labels.count(i) for i in range(3)]
    assert sizes == [30, 20, 12]  # cluster 0 is the largest


def test_fixed_k_and_small_or_degenerate_inputs():
    x, _ = blobs([10, 10, 10])
    assert cluster(x, k=5, k_min=2, k_max=8, seed=0, sample=100).k == 5
    assert cluster(np.zeros((0, 4)), k=None, k_min=2, k_max=8, seed=0, sample=100).k == 0
    one = cluster(np.ones((1, 4)), k=None, k_min=2, k_max=8, seed=0, sample=100)
    assert (one.k, one.labels) == (1, [0])
    same = cluster(np.ones((6, 4)), k=3, k_min=2, k_max=8, seed=0, sample=100)  # all identical
    assert same.k == 1 and same.labels == [0] * 6 and "capped" in same.selection
    two = cluster(np.eye(4)[:2], k=None, k_min=2, k_max=8, seed=0, sample=100)
    assert two.k == 2 and sorted(two.labels) == [0, 1]  # too few rows to search: one per point


def test_labels_are_the_terms_that_set_a_cluster_apart():
    texts = ["set a timer for 5 minutes", "timer for 10 minutes please", "timer 3 minutes",
             "sort the planets by size", "order planets by mass", "sort planets by distance"]
    terms = cluster_terms(texts, [0, 0, 0, 1, 1, 1], top=2)
    assert terms[0] == ["minutes", "timer"] or set(terms[0]) == {"minutes", "timer"}
    assert "planets" in terms[1]
    assert cluster_terms(["12", "34"], [0, 1], top=3) == {0: [], 1: []}  # numbers only: no label


def test_report_and_markdown_escape_and_count():
    x, truth = blobs([3, 2])
    c = cluster(x, k=2, k_min=2, k_max=4, seed=0, sample=100)
    rows = [{"id": f"r{i}", "domain": "math" if i < 3 else "code", "instruction": "a | b",
             "rationale": "why", "cluster": lab} for i, lab in enumerate(c.labels)]
    rep = build_report(rows, c, {0: ["alpha"], 1: ["beta|gamma"]}, examples=1)
    assert rep["failures"] == 5 and sum(cl["size"] for cl in rep["clusters"]) == 5
    assert rep["domains"]["math"]["failures"] == 3
    assert all(len(cl["examples"]) == 1 for cl in rep["clusters"])
    md = markdown(rep)
    assert "beta\\|gamma" in md and "| 0 | 3 | alpha | math 3 |" in md
    assert "No failures" in markdown(build_report([], cluster(np.zeros((0, 2)), k=None, k_min=2,
                                                              k_max=3, seed=0, sample=100), {}, 2))


def test_config_rejects_a_bad_k_range():
    with pytest.raises(ValidationError, match="k_min"):
        FailuresConfig(k_min=6, k_max=3)


# --- the stage on Ray Data with the real embedding model -------------------------------------

# Planted failure modes: domain, instruction maker, rationale maker. Each mode's characteristic
# term (timer, planets, python) runs through both its task and the judge's rationale.
MODES = {
    "timer": ("automation", lambda r: f"Set a kitchen timer for {r.randint(2, 90)} minutes.",
              lambda r: f"timer args.minutes: expected {r.randint(2, 90)}, got {r.randint(2, 90)}"),
    "planets": ("reasoning",
                lambda r: "Order the planets " + ", ".join(r.sample(
                    ["Mars", "Venus", "Jupiter", "Saturn", "Mercury"], 3)) + " by distance.",
                lambda r: f"position {r.randint(1, 3)}: expected other planets order"),
    "python": ("code", lambda r: f"Write a Python function f{r.randint(0, 99)}(xs) returning "
               "the sum of the list.",
               lambda r: "tests failed: NameError: python function is not defined"),
}


def planted_failures(per_mode: int = 12) -> tuple[list[dict], list[str]]:
    r = random.Random(0)
    rows, truth = [], []
    for mode, (domain, instruction, rationale) in MODES.items():
        for i in range(per_mode):
            rows.append({"id": f"{mode}-{i}", "instruction": instruction(r), "response": "ref",
                         "domain": domain, "difficulty": "easy", "source": "t", "metadata": "{}",
                         "answer": "wrong", "verdict": "fail", "rationale": rationale(r)})
            truth.append(mode)
    return rows, truth


def write(path, rows: list[dict]) -> str:
    os.makedirs(path, exist_ok=True)
    cols = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    pq.write_table(pa.table(cols), os.path.join(path, "part-0.parquet"))
    return str(path)


def config(tmp_path, source: str, **failures) -> CogumiConfig:
    return CogumiConfig.model_validate({
        "run": {"name": "f", "root": str(tmp_path / "runs")},
        "failures": {"input": source, "embed_batch_size": 16, **failures},
    })


@pytest.fixture(scope="module")
def analysed(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failures")
    rows, truth = planted_failures()
    # Judgments input: passes and an unjudged row must be left out.
    extra = [{**rows[0], "id": "ok", "verdict": "pass"}, {**rows[1], "id": "u", "verdict": "unjudged"}]
    source = write(tmp / "judgments", rows + extra)
    out = run_pipeline(config(tmp, source, k_max=6), only=["failures"])["failures"]
    return out, truth


def test_stage_recovers_planted_clusters_with_labels(analysed):
    out, truth = analysed
    table = pq.read_table(out.outputs["clusters"])
    assert table.num_rows == len(truth)  # only the 'fail' rows
    assert out.metrics["clusters"] == 3 and out.metrics["k_selection"] == "silhouette"
    assert adjusted_rand_score(truth, table["cluster"].to_pylist()) > 0.9
    emb = np.asarray(table["embedding"].to_pylist())
    assert emb.shape == (len(truth), 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    labels = dict(zip(table["id"].to_pylist(), table["cluster_label"].to_pylist(), strict=True))
    assert "timer" in labels["timer-0"] and "python" in labels["python-0"]
    assert "planets" in labels["planets-0"]
    assert table["rationale"].to_pylist()[0]  # the judge's rationale is exported with the row


def test_stage_report_per_domain_and_cluster(analysed):
    out, _ = analysed
    report = json.loads(Path(out.outputs["report"]).read_text())
    assert report["failures"] == 36 and len(report["clusters"]) == 3
    assert {d: v["failures"] for d, v in report["domains"].items()} == {
        "automation": 12, "reasoning": 12, "code": 12}
    for c in report["clusters"]:
        assert c["size"] == 12 and len(c["domains"]) == 1 and len(c["examples"]) == 3
    assert out.metrics["failures.code"] == 12
    md = Path(out.outputs["report_md"]).read_text()
    assert "36 failures in 3 clusters" in md and "timer" in md


def test_fixed_k_empty_input_and_missing_columns(ray_session, tmp_path):
    rows, _ = planted_failures(per_mode=2)
    fixed = run_pipeline(config(tmp_path, write(tmp_path / "a", rows), k=2),
                         only=["failures"])["failures"]
    assert fixed.metrics["clusters"] == 2 and fixed.metrics["k_selection"] == "config"

    empty = pa.table({"id": pa.array([], pa.string()), "instruction": pa.array([], pa.string()),
                      "rationale": pa.array([], pa.string())})
    os.makedirs(tmp_path / "e")
    pq.write_table(empty, tmp_path / "e" / "empty.parquet")
    out = run_pipeline(config(tmp_path / "2", str(tmp_path / "e")), only=["failures"])["failures"]
    assert out.metrics["failures"] == 0 and out.metrics["clusters"] == 0
    assert "No failures" in Path(out.outputs["report_md"]).read_text()
    assert pq.read_table(out.outputs["clusters"]).num_rows == 0

    bad = write(tmp_path / "b", [{"id": "1", "instruction": "x", "answer": "y"}])
    with pytest.raises(DataError, match=r"lack the columns \['rationale'\]"):
        run_pipeline(config(tmp_path / "3", bad), only=["failures"])
