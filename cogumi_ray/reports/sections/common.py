"""Helpers every section uses: the 'not run' gate and readers that surface warnings inline."""

from __future__ import annotations

from typing import Any

from cogumi_ray.reports.doc import Note, Section
from cogumi_ray.reports.fmt import clip, seconds
from cogumi_ray.reports.load import RunData


def gate(run: RunData, sec: Section, stage: str) -> bool:
    """True when `stage` finished; otherwise add the one line saying why there is nothing."""
    rec = run.stage(stage)
    if rec is None:
        sec.add(Note(f"{stage}: not run"))
        return False
    if rec.status == "failed":
        sec.add(Note(f"{stage}: not run to completion — the stage failed after "
                     f"{seconds(rec.seconds)}: {clip(rec.error or 'no error recorded', 300)}", "warn"))
        return False
    if rec.status != "done":
        sec.add(Note(f"{stage}: not run to completion (status '{rec.status}': still running or "
                     "interrupted; `cogumi pipeline run CONFIG --resume` continues it)"))
        return False
    return True


class Inline:
    """Runs readers on `run` and copies any warning they raise into `sec`, where it belongs."""

    def __init__(self, run: RunData, sec: Section) -> None:
        self.run, self.sec = run, sec

    def _collect(self, start: int) -> None:
        for w in self.run.warnings[start:]:
            self.sec.add(Note(w, "warn"))

    def json(self, stage: str, output: str | None, default: str | None = None,
             required: bool = True) -> Any | None:
        n = len(self.run.warnings)
        out = self.run.json(stage, output, default, required)
        self._collect(n)
        return out

    def json_at(self, path: str, stage: str) -> Any | None:
        n = len(self.run.warnings)
        out = self.run.json_at(path, stage)
        self._collect(n)
        return out

    def rows(self, path: str, stage: str, columns: list[str] | None = None) -> list[dict] | None:
        n = len(self.run.warnings)
        out = self.run.rows(path, stage, columns)
        self._collect(n)
        return out

    def bytes_at(self, path: str, stage: str) -> bytes | None:
        n = len(self.run.warnings)
        out = self.run.bytes_at(path, stage)
        self._collect(n)
        return out


def expect(inline: Inline, stage: str, what: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """`value` when it has the expected JSON type, else None and a warning (a renamed key or a
    file from another version must show up, not crash the report)."""
    if isinstance(value, kind):
        return value
    if value is not None:
        inline.run.warn(f"{stage}: {what} has an unexpected shape ({type(value).__name__}); skipped")
        inline._collect(len(inline.run.warnings) - 1)
    return None
