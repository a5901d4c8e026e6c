"""Score LoRA modifiers against the base they were trained on: what each adapter buys on its own
domain, what it costs on the others, and every row's pass/fail per option (the router's labels).

An "option" is one way to answer a query: `base`, or base + one domain's adapter. Each option
answers the same held-out rows with the eval engine (greedy) and the suite's verifiers grade
them, so the numbers are comparable with eval_base's.

Domains are free names. A row of a domain the suite does not generate is graded by the suite
verifier its metadata fits (`verifier_domain`) and keeps its own domain in every score; a row no
verifier can grade is not scored, and is counted per domain (`Scorable.unverifiable`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage

if TYPE_CHECKING:
    from cogumi_ray.config import CogumiConfig
    from cogumi_ray.data.schema import Example
    from cogumi_ray.eval.suite import SuiteScore

BASE = "base"
# Verifier data a row may carry -> the suite domain whose verifier reads it, in verify()'s own
# order (code's tests and automation's call before the text checks; math's bare answer last).
_VERIFIER_DATA = (("tests", "code"), ("call", "automation"), ("order", "general"),
                  ("expected", "general"), ("answer", "math"))


def verifier_domain(ex: Example) -> str | None:
    """The suite domain whose verifier grades `ex`, or None when none can.

    A suite row is graded as its own domain. A row of any other domain (e.g. suite tasks
    relabelled 'legal', or a new domain's rows written in the suite's format) is graded by the
    verifier that `metadata["verifier"]` names, else by the one whose data it carries.
    """
    from cogumi_ray.data.suite.verify import can_verify

    if can_verify(ex):
        return ex.domain
    named = ex.metadata.get("verifier")
    for d in [str(named)] if named else [d for key, d in _VERIFIER_DATA if key in ex.metadata]:
        if can_verify(replace(ex, domain=d)):
            return d
    return None


@dataclass
class Scorable:
    """The rows the options answer, split by split, ready for the suite verifiers."""

    splits: dict[str, list[Example]]  # verifiable rows, each labelled with its verifier's domain
    domains: dict[str, str]  # id -> own domain, for rows graded under another domain's verifier
    unverifiable: dict[str, int]  # domain -> rows (all splits) no verifier can grade: not scored


def scorable(splits: dict[str, list[Example]]) -> Scorable:
    """Keep the verifiable rows of each split (a split without any is dropped). Suite rows pass
    through unchanged, so the base's score of a suite split is still the score cache's entry."""
    out: dict[str, list[Example]] = {}
    domains: dict[str, str] = {}
    unverifiable: dict[str, int] = {}
    for split, examples in splits.items():
        keep = []
        for ex in examples:
            d = verifier_domain(ex)
            if d is None:
                unverifiable[ex.domain] = unverifiable.get(ex.domain, 0) + 1
                continue
            if d != ex.domain:
                domains[ex.id] = ex.domain
                ex = replace(ex, domain=d)
            keep.append(ex)
        if keep:
            out[split] = keep
    return Scorable(out, domains, dict(sorted(unverifiable.items())))


def own_domains(score: SuiteScore, domains: dict[str, str]) -> SuiteScore:
    """`score` with each row back under its own domain (see `scorable`), tallies recomputed."""
    from cogumi_ray.eval.scores import BenchmarkScore
    from cogumi_ray.eval.suite import SuiteScore

    if not any(it.id in domains for it in score.items):
        return score
    items = [replace(it, group={**it.group, "domain": domains[it.id]}) if it.id in domains else it
             for it in score.items]
    return SuiteScore.from_benchmark(BenchmarkScore.from_items("suite", items))


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
