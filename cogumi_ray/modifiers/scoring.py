"""Score LoRA modifiers against the base they were trained on: what each adapter buys on its own
domain, what it costs on the others, and every row's pass/fail per option (the router's labels).

An "option" is one way to answer a query: `base`, or base + one domain's adapter. Each option
answers the same held-out rows with the eval engine (greedy) and the suite's verifiers grade
them, so the numbers are comparable with eval_base's.

Domains are free names: `score_model` grades a row of a domain the suite does not generate by the
suite verifier that fits it and keeps it under its own domain (`eval.verifiers`, the one mapping
eval_base and distill use too); a row no verifier can grade is not scored, and is counted per
domain (`Scorable.unverifiable`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval.suite import SuiteScore

BASE = "base"


@dataclass
class Scorable:
    """The rows the options answer, split by split, exactly as read (so a split's score is the
    run's score cache entry for those rows, e.g. eval_base's of the held-out split)."""

    splits: dict[str, list[Example]]  # splits with at least one verifiable row
    unverifiable: dict[str, int]  # domain -> rows (all splits) no verifier can grade: not scored


def scorable(splits: dict[str, list[Example]]) -> Scorable:
    """Keep the splits a suite verifier can grade some row of, and count the rows none can."""
    from cogumi_ray.eval.verifiers import unverifiable, verifier_domain

    keep = {s: ex for s, ex in splits.items() if any(verifier_domain(e) for e in ex)}
    return Scorable(keep, unverifiable(e for ex in splits.values() for e in ex))


@dataclass
class OptionRows:
    """Per-row verdicts of one option on one split."""

    option: str
    split: str
    score: SuiteScore


@dataclass
class Uplift:
    """One adapter against the base (pass rates in [0, 1], deltas in percentage points)."""

    domain: str
    own_base: float
    own_adapter: float
    other_base: float
    other_adapter: float
    own_rows: int  # verifiable held-out rows of the domain; 0 = the uplift is unknown
    min_uplift_pp: float

    @property
    def uplift_pp(self) -> float:
        return round(100 * (self.own_adapter - self.own_base), 2)

    @property
    def other_delta_pp(self) -> float:
        return round(100 * (self.other_adapter - self.other_base), 2)

    @property
    def beats_base(self) -> bool:
        return self.uplift_pp > self.min_uplift_pp

    def metrics(self) -> dict[str, Any]:
        d = self.domain
        return {
            f"{d}_base_pass_rate": round(self.own_base, 4),
            f"{d}_adapter_pass_rate": round(self.own_adapter, 4),
            f"{d}_uplift_pp": self.uplift_pp,
            f"{d}_other_domains_delta_pp": self.other_delta_pp,
            f"{d}_beats_base": self.beats_base,
            f"{d}_scored_rows": self.own_rows,
        }


def _rate(score: SuiteScore, domains: set[str], inside: bool) -> float:
    items = [it for it in score.items if (it.group.get("domain") in domains) == inside]
    return sum(it.passed for it in items) / len(items) if items else 0.0


def uplift(domain: str, base: SuiteScore, adapter: SuiteScore, min_uplift_pp: float) -> Uplift:
    own = {domain}
    return Uplift(
        domain=domain,
        own_base=_rate(base, own, True),
        own_adapter=_rate(adapter, own, True),
        other_base=_rate(base, own, False),
        other_adapter=_rate(adapter, own, False),
        own_rows=sum(it.group.get("domain") == domain for it in base.items),
        min_uplift_pp=min_uplift_pp,
    )


def score_adapter(
    cfg: CogumiConfig, base: str, adapter_dir: str, splits: dict[str, list[Example]],
    cache: str | None = None,
) -> dict[str, SuiteScore]:
    """base + adapter (merged into a scratch HF folder, so any HF-folder engine can load it)."""
    from cogumi_ray.eval.stage import score_model
    from cogumi_ray.train.lora import merge_adapter

    with tempfile.TemporaryDirectory(prefix="cogumi-merged-") as merged:
        merge_adapter(base, storage.local_path(adapter_dir), merged)
        return {split: score_model(cfg, merged, ex, cache=cache)
                for split, ex in splits.items() if ex}


def write_rows(path: str, rows: list[OptionRows]) -> None:
    """One Parquet row per (split, example, option): the router's training labels."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([
        {"split": r.split, "id": it.id, "domain": it.group.get("domain", ""),
         "difficulty": it.group.get("difficulty", ""), "option": r.option,
         "passed": bool(it.passed), "reason": it.reason}
        for r in rows for it in r.score.items
    ], schema=pa.schema([("split", pa.string()), ("id", pa.string()), ("domain", pa.string()),
                         ("difficulty", pa.string()), ("option", pa.string()),
                         ("passed", pa.bool_()), ("reason", pa.string())]))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.atomic_write_bytes(path, buf.getvalue())
