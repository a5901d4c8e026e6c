"""The distillation set: kept corrections as Example rows, replayed training rows, reverse pairs,
deduplicated with the curation stage's MinHash LSH (`cogumi_ray.data.dedup`).

Every row says where it came from: `source` is self_critique, reference_teacher, <provider>_teacher
or reverse_<source> (replayed rows keep theirs), and metadata.distill holds the failure's id.
Dedup prefers, within a duplicate cluster, self-critique over teacher over replayed rows (the
`quality` column); reverse pairs are built after dedup from the rows it kept, since a long answer
makes a reverse pair look like a near-duplicate of its own forward pair.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cogumi_ray.distill.teacher import SOURCE

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from cogumi_ray.data.config import DedupConfig
    from cogumi_ray.data.lsh import DedupStats

PART = "part"  # self_critique | teacher | replay | reverse
QUALITY: dict[str, float] = {"self_critique": 3.0, "teacher": 2.0, "replay": 1.0, "reverse": 0.5}


def schema() -> pa.Schema:
    import pyarrow as pa

    from cogumi_ray.data.schema import arrow_schema

    return arrow_schema().append(pa.field("quality", pa.float64())).append(pa.field(PART, pa.string()))


def _meta(raw: Any, **extra: Any) -> str:
    try:
        meta = json.loads(raw) if isinstance(raw, str) and raw else dict(raw or {})
    except (json.JSONDecodeError, TypeError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    if extra:
        meta["distill"] = extra
    return json.dumps(meta, sort_keys=True, ensure_ascii=False)


def AsExamples(batch: pa.Table, part: str, answer_column: str) -> pa.Table:  # noqa: N802
    """Ray Data UDF: judged rows (or training rows, part='replay') -> Example rows."""
    import pyarrow as pa

    rows = batch.to_pylist()
    out = []
    for r in rows:
        if part == "replay":
            out.append({**{c: r.get(c) for c in ("id", "instruction", "response", "domain",
                                                  "difficulty", "source")},
                        "metadata": _meta(r.get("metadata"))})
            continue
        source = r.get(SOURCE) or part
        out.append({
            "id": f"{r['id']}#{part}", "instruction": r["instruction"], "response": r[answer_column],
            "domain": r.get("domain"), "difficulty": r.get("difficulty"), "source": source,
            "metadata": _meta(r.get("metadata"), of=str(r["id"]), part=part, source=source),
        })
    for row in out:
        row["quality"], row[PART] = QUALITY[part], part
    return pa.Table.from_pylist(out, schema=schema())


def ReversePairs(batch: pa.Table, template: str) -> pa.Table:  # noqa: N802
    """Ray Data UDF: answer -> task pairs. Metadata names only the forward row: the suite's
    verifier fields would describe the forward task, not this one."""
    import pyarrow as pa

    out = [{"id": f"{r['id']}#reverse", "instruction": template.format(response=r["response"]),
            "response": r["instruction"], "domain": r["domain"], "difficulty": r["difficulty"],
            "source": f"reverse_{r['source']}", "metadata": _meta(None, reverse_of=r["id"]),
            "quality": QUALITY["reverse"], PART: "reverse"} for r in batch.to_pylist()]
    return pa.Table.from_pylist(out, schema=schema())


def as_examples(ds: ray.data.Dataset, part: str, answer_column: str) -> ray.data.Dataset:
    return ds.map_batches(AsExamples, fn_kwargs={"part": part, "answer_column": answer_column},
                          batch_format="pyarrow")


def replay(train: str, fraction: float, seed: int) -> ray.data.Dataset | None:
    """A seeded random share of the training set, or None for fraction 0."""
    import ray.data

    if fraction <= 0:
        return None
    ds = ray.data.read_parquet(train)
    if fraction < 1:
        ds = ds.random_sample(fraction, seed=seed)
    return as_examples(ds, "replay", "response")


def combine(
    parts: list[ray.data.Dataset], dedup_cfg: DedupConfig, reverse_template: str | None
) -> tuple[ray.data.Dataset, DedupStats]:
    """Union, deduplicate, then add reverse pairs of the kept corrections (not of replayed rows).
    Returns the materialised set and the dedup stats."""
    import ray.data
    from ray.data.expressions import col

    from cogumi_ray.data.dedup import dedup
    from cogumi_ray.data.lsh import DedupStats

    if not parts:
        return ray.data.from_arrow(schema().empty_table()), DedupStats()
    union = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    kept, stats = dedup(union, dedup_cfg)
    kept = kept.materialize()
    if reverse_template:
        fwd = kept.filter(expr=col(PART) != "replay")
        kept = kept.union(fwd.map_batches(ReversePairs, fn_kwargs={"template": reverse_template},
                                          batch_format="pyarrow")).materialize()
    return kept, stats
