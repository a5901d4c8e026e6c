"""The router's labels: each query's pass/fail per option (from the modifiers stage's
scores.parquet) and its target, the cheapest option that passes.

Ties in cost go to the base (it is listed first), and a query nothing passes targets the base
too: an expensive option that also fails buys nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cogumi_ray import storage
from cogumi_ray.errors import ConfigError, DataError
from cogumi_ray.serve.protocol import BASE

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from cogumi_ray.data.schema import Example
    from cogumi_ray.route.config import RouterConfig

log = logging.getLogger(__name__)

REQUIRED = ("split", "id", "option", "passed")


@dataclass
class LabelSet:
    ids: list[str]
    texts: list[str]  # the query: the example's instruction
    domains: list[str]
    options: list[str]  # BASE first, then the modifiers sorted
    passed: np.ndarray  # (rows, options) bool
    costs: np.ndarray  # (options,) float
    extras: np.ndarray  # (rows, len(extra_columns)) float
    extra_columns: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def targets(self) -> np.ndarray:
        return cheapest_passing(self.passed, self.costs)

    def subset(self, idx: np.ndarray) -> LabelSet:
        return LabelSet([self.ids[i] for i in idx], [self.texts[i] for i in idx],
                        [self.domains[i] for i in idx], self.options, self.passed[idx], self.costs,
                        self.extras[idx], self.extra_columns)


def cheapest_passing(passed: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """(rows,) index of the cheapest passing option; 0 (the base) on ties and when none passes."""
    import numpy as np

    order = np.argsort(costs, kind="stable")  # stable: the base (index 0) wins cost ties
    by_cost = passed[:, order]
    first = by_cost.argmax(axis=1)
    return np.where(by_cost.any(axis=1), order[first], 0)


def read_scores(path: str) -> pa.Table:
    import pyarrow.parquet as pq

    fs, p = storage.fs_and_path(path)
    if not fs.exists(p):
        raise DataError(f"scores file {path!r} does not exist; the modifiers stage writes it "
                        "(modifiers.score: true)")
    try:
        with fs.open(p, "rb") as f:
            table = pq.read_table(f)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"cannot read scores {path!r}: {type(e).__name__}: {e}") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DataError(f"scores {path!r} lacks columns {missing} (has {table.column_names}); "
                        f"it needs {list(REQUIRED)}, as cogumi_ray.modifiers.scoring.write_rows "
                        "writes them")
    return table


def option_costs(options: list[str], rc: RouterConfig) -> list[float]:
    unknown = sorted(set(rc.costs) - set(options))
    if unknown:
        raise ConfigError(f"route.costs names unknown options {unknown}; the scores hold {options}")
    costs = [rc.cost(o) for o in options]
    if any(c < costs[0] for c in costs[1:]):
        raise ConfigError(f"route.costs: the base must be the cheapest option, got "
                          f"{dict(zip(options, costs, strict=True))}")
    return costs


def _options(found: set[str], rc: RouterConfig, path: str) -> list[str]:
    if BASE not in found:
        raise DataError(f"scores {path!r} have no {BASE!r} rows (options: {sorted(found)}); the "
                        "base's verdicts are the reference every modifier is compared with")
    if rc.options is not None:
        unknown, absent = sorted(found - set(rc.options)), sorted(set(rc.options) - found)
        if unknown or absent:
            raise ConfigError(f"scores {path!r}: unknown options {unknown}, expected but absent "
                              f"{absent}; route.options is {rc.options}")
    return [BASE, *sorted(found - {BASE})]


def build_labels(table: pa.Table, split: str, examples: list[Example], rc: RouterConfig,
                 path: str = "scores") -> LabelSet:
    """The LabelSet of `split`: one row per query id, in the order the examples list them."""
    import numpy as np

    extra = rc.features.extra_columns
    absent = [c for c in extra if c not in table.column_names]
    if absent:
        raise DataError(f"scores {path!r} lack the feature columns {absent} named in "
                        "route.features.extra_columns")
    rows = [r for r in table.select([*REQUIRED, *extra]).to_pylist() if r["split"] == split]
    if not rows:
        raise DataError(f"scores {path!r} have no rows for split {split!r}; the router needs "
                        "labelled queries (did the modifiers stage score that split?)")
    options = _options({str(r["option"]) for r in rows}, rc, path)
    costs = option_costs(options, rc)
    verdicts: dict[str, dict[str, bool]] = {}
    base_rows: dict[str, dict[str, Any]] = {}
    for r in rows:
        qid, opt = str(r["id"]), str(r["option"])
        if opt in verdicts.setdefault(qid, {}):
            raise DataError(f"scores {path!r}: id {qid!r} has two {opt!r} rows in split {split!r}")
        verdicts[qid][opt] = bool(r["passed"])
        if opt == BASE:
            base_rows[qid] = r
    incomplete = [q for q, v in verdicts.items() if len(v) != len(options)]
    if incomplete:
        raise DataError(f"scores {path!r}: {len(incomplete)} ids lack a verdict for some option "
                        f"(e.g. {incomplete[:3]}); every option must answer every row")
    by_id = {e.id: e for e in examples}
    unmatched = [q for q in verdicts if q not in by_id]
    if unmatched:
        raise DataError(f"{len(unmatched)} scored ids of split {split!r} are not in its examples "
                        f"(e.g. {unmatched[:3]}); pass the split the modifiers stage scored")
    ids = [e.id for e in examples if e.id in verdicts]
    extras = np.array([[_number(base_rows[q].get(c), c) for c in extra] for q in ids],
                      dtype=np.float64).reshape(len(ids), len(extra))
    for j in range(extras.shape[1]):  # a missing value gets the column mean: neutral after scaling
        col = extras[:, j]
        if np.isnan(col).any():
            log.warning("route: %d missing values of %s filled with the mean", np.isnan(col).sum(),
                        extra[j])
            col[np.isnan(col)] = np.nanmean(col) if (~np.isnan(col)).any() else 0.0
    return LabelSet(
        ids=ids, texts=[by_id[q].instruction for q in ids], domains=[by_id[q].domain for q in ids],
        options=options, passed=np.array([[verdicts[q][o] for o in options] for q in ids], dtype=bool),
        costs=np.array(costs, dtype=np.float64), extras=extras, extra_columns=list(extra),
    )


def _number(value: Any, column: str) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"feature column {column!r} holds {value!r}, not a number") from None


def load_labels(scores_path: str, examples_path: str, split: str, rc: RouterConfig) -> LabelSet:
    from cogumi_ray.eval.stage import read_examples

    return build_labels(read_scores(scores_path), split, read_examples(examples_path), rc,
                        scores_path)
