"""Stage "failures" (`cogumi failures analyze`): cluster the judged failures and report them.

Outputs (in the stage dir):
- `clusters.parquet`: every failure with its columns (judge rationale included) plus
  failure_text, embedding (list of float32, L2-normalised), cluster and cluster_label;
- `report.json` / `report.md`: per cluster (size, label, domains, examples) and per domain.
"""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.runs import RunContext, StageOutput

log = logging.getLogger(__name__)

STAGE = "failures"


def collect(ds: Any) -> tuple[dict[str, list[Any]], np.ndarray]:
    """Pull the embedded failures to the driver: (columns, embeddings (n, dim))."""
    import numpy as np

    from cogumi_ray.failures.embed import EMBEDDING

    cols: dict[str, list[Any]] = {}
    vectors = []
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        vectors.append(np.asarray(batch.pop(EMBEDDING), dtype=np.float32))
        for name, values in batch.items():
            cols.setdefault(name, []).extend(values.tolist())
    return cols, (np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32))


def to_table(cols: dict[str, list[Any]], x: np.ndarray, labels: list[int],
             names: list[str]) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    from cogumi_ray.failures.embed import EMBEDDING

    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    dim = x.shape[1] if x.ndim == 2 else 0
    offsets = pa.array(np.arange(len(x) + 1, dtype=np.int32) * dim)
    emb = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1), pa.float32()))
    return (table.append_column(EMBEDDING, emb)
            .append_column("cluster", pa.array(labels, pa.int32()))
            .append_column("cluster_label", pa.array(names, pa.string())))


def write_parquet(path: str, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.atomic_write_bytes(path, buf.getvalue())


def run(cfg: CogumiConfig, ctx: RunContext, inputs: dict[str, str]) -> StageOutput:
    import json

    import numpy as np

    from cogumi_ray.failures.embed import TEXT, embed_dataset
    from cogumi_ray.failures.kmeans import cluster
    from cogumi_ray.failures.label import cluster_terms
    from cogumi_ray.failures.read import read_failures
    from cogumi_ray.failures.report import build_report, markdown
    from cogumi_ray.runs import StageOutput

    fc = cfg.failures
    out_dir = ctx.stage_dir(STAGE)
    ds = read_failures(inputs["failures"], required=["id", *fc.text_columns])
    t0 = time.perf_counter()
    n = ds.count()
    if n:
        cols, x = collect(embed_dataset(ds, fc))
    else:
        log.warning("failures: %s holds no failures; writing an empty report", inputs["failures"])
        schema = ds.schema()
        cols = {name: [] for name in [*(schema.names if schema else ["id"]), TEXT]}
        x = np.zeros((0, 0), np.float32)
    embed_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    clustering = cluster(x, k=fc.k, k_min=fc.k_min, k_max=fc.k_max, seed=fc.seed,
                         sample=fc.silhouette_sample)
    terms = cluster_terms(cols[TEXT], clustering.labels, fc.top_terms)
    names = [", ".join(terms.get(c, [])) for c in clustering.labels]
    cluster_s = time.perf_counter() - t1

    rows = [{"id": cols["id"][i], "domain": cols.get("domain", [None] * n)[i],
             "instruction": cols.get("instruction", [None] * n)[i],
             "rationale": cols.get("rationale", [None] * n)[i],
             "cluster": clustering.labels[i]} for i in range(n)]
    report = build_report(rows, clustering, terms, fc.examples_per_cluster)
    paths = {"clusters": storage.join(out_dir, "clusters.parquet"),
             "report": storage.join(out_dir, "report.json"),
             "report_md": storage.join(out_dir, "report.md")}
    write_parquet(paths["clusters"], to_table(cols, x, clustering.labels, names))
    storage.atomic_write_text(paths["report"], json.dumps(report, indent=2, ensure_ascii=False))
    storage.atomic_write_text(paths["report_md"], markdown(report))

    metrics: dict[str, Any] = {"failures": n, "clusters": clustering.k,
                               "k_selection": clustering.selection,
                               "silhouette": clustering.best_silhouette}
    if report["clusters"]:
        metrics["largest_cluster"] = report["clusters"][0]["label"]
    for d, info in report["domains"].items():
        metrics[f"failures.{d}"] = info["failures"]
    metrics["embed_s"], metrics["cluster_s"] = round(embed_s, 2), round(cluster_s, 2)
    log.info("failures: %s", metrics)
    return StageOutput(outputs=paths, metrics=metrics)
