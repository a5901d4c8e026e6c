"""The one record that flows through every data stage, and its Arrow schema for Parquet.

`metadata` is a JSON object serialised to a string column, so Parquet files stay flat and any
stage can add keys (e.g. the task suite stores what its verifier needs: answer, tests, call).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

COLUMNS: tuple[str, ...] = (
    "id", "instruction", "response", "domain", "difficulty", "source", "metadata",
)


@dataclass
class Example:
    id: str
    instruction: str
    response: str
    domain: str = "general"
    difficulty: str = "medium"
    source: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, str]:
        row = asdict(self)
        row["metadata"] = json.dumps(self.metadata, sort_keys=True, ensure_ascii=False)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        meta = row.get("metadata") or "{}"
        return cls(
            id=str(row["id"]),
            instruction=str(row["instruction"]),
            response=str(row["response"]),
            domain=str(row.get("domain") or "general"),
            difficulty=str(row.get("difficulty") or "medium"),
            source=str(row.get("source") or "unknown"),
            metadata=json.loads(meta) if isinstance(meta, str) else dict(meta),
        )


def arrow_schema():
    import pyarrow as pa

    return pa.schema([(c, pa.string()) for c in COLUMNS])
