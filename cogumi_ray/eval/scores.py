"""Score records shared by every benchmark: pass counts overall and per group."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    passed: int = 0
    total: int = 0

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def add(self, ok: bool) -> None:
        self.passed += int(ok)
        self.total += 1

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "total": self.total, "score": round(self.rate, 4)}


@dataclass
class ItemResult:
    """One graded answer (what the report's per-item file holds)."""

    benchmark: str
    id: str
    passed: bool
    reason: str
    answer: str
    group: dict[str, str] = field(default_factory=dict)  # e.g. {"domain": "code"}


def items_parquet(items: Iterable[ItemResult]) -> bytes:
    """Graded items as Parquet bytes (one row each; the group as a JSON string)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("benchmark", pa.string()), ("id", pa.string()), ("passed", pa.bool_()),
                        ("reason", pa.string()), ("answer", pa.string()), ("group", pa.string())])
    table = pa.Table.from_pylist([
        {"benchmark": it.benchmark, "id": it.id, "passed": it.passed, "reason": it.reason,
         "answer": it.answer, "group": json.dumps(it.group, sort_keys=True)}
        for it in items
    ], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def items_from_parquet(data: bytes) -> list[ItemResult]:
    """What `items_parquet` wrote."""
    import io

    import pyarrow.parquet as pq

    return [ItemResult(r["benchmark"], r["id"], bool(r["passed"]), r["reason"], r["answer"],
                       json.loads(r["group"]))
            for r in pq.read_table(io.BytesIO(data)).to_pylist()]


@dataclass
class BenchmarkScore:
    name: str
    overall: Tally
    groups: dict[str, dict[str, Tally]] = field(default_factory=dict)  # kind -> value -> tally
    items: list[ItemResult] = field(default_factory=list)

    @classmethod
    def from_items(cls, name: str, items: Iterable[ItemResult]) -> BenchmarkScore:
        score = cls(name, Tally())
        for it in items:
            score.items.append(it)
            score.overall.add(it.passed)
            for kind, value in it.group.items():
                score.groups.setdefault(kind, {}).setdefault(value, Tally()).add(it.passed)
        return score

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.overall.as_dict(),
            **{kind: {v: t.as_dict() for v, t in sorted(tallies.items())}
               for kind, tallies in self.groups.items()},
        }

    def flat_scores(self) -> dict[str, float]:
        """{'suite': 0.41, 'suite.code': 0.6, 'suite.hard': 0.2, ...}: what gates compare against."""
        out = {self.name: self.overall.rate}
        for tallies in self.groups.values():
            out.update({f"{self.name}.{v}": t.rate for v, t in tallies.items()})
        return out
