"""Read a run for the report: the manifest through `runs.Manifest`, and stage files that may be
missing or malformed. A bad stage file never raises here: it becomes a warning that the report
shows, and the reader returns None, so one broken stage cannot hide the rest of the run."""

from __future__ import annotations

import json
import logging
from typing import Any

from cogumi_ray import storage
from cogumi_ray.errors import RunError
from cogumi_ray.runs import Manifest, StageRecord

log = logging.getLogger(__name__)


class RunData:
    """One run directory, read-only: unlike `RunContext` it never creates a manifest."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = str(run_dir).rstrip("/")
        path = storage.join(self.run_dir, "manifest.json")
        if not storage.exists(path):
            raise RunError(f"no run at {self.run_dir} (no manifest.json); run `cogumi demo` or "
                           "`cogumi pipeline run CONFIG` first, or pass the run's directory")
        try:
            self.manifest = Manifest.model_validate(storage.read_json(path))
        except Exception as e:  # without a manifest there is nothing to report on
            raise RunError(f"manifest {path} is unreadable ({e}); a report needs a valid manifest") from None
        self.warnings: list[str] = []

    @property
    def name(self) -> str:
        return self.manifest.run

    def stage(self, name: str) -> StageRecord | None:
        return self.manifest.stages.get(name)

    def done(self, name: str) -> StageRecord | None:
        rec = self.stage(name)
        return rec if rec is not None and rec.status == "done" else None

    def metrics(self, name: str) -> dict[str, Any]:
        rec = self.done(name)
        return dict(rec.metrics) if rec else {}

    def stage_dir(self, name: str) -> str:
        return storage.join(self.run_dir, name)

    def warn(self, message: str) -> None:
        log.warning("report: %s", message)
        self.warnings.append(message)

    def path(self, stage: str, output: str | None, default: str | None = None) -> str | None:
        """A stage file: the output the manifest recorded, else `default` inside the stage dir
        (recorded paths are absolute, so a run directory that was moved still finds its files)."""
        rec = self.stage(stage)
        if output and rec is not None and output in rec.outputs and storage.exists(rec.outputs[output]):
            return rec.outputs[output]
        if default:
            p = storage.join(self.stage_dir(stage), default)
            if storage.exists(p):
                return p
        return None

    def json(self, stage: str, output: str | None, default: str | None = None,
             required: bool = True) -> Any | None:
        """Parsed JSON of a stage file; None (with a warning when `required`) if absent or bad."""
        p = self.path(stage, output, default)
        if p is None:
            if required:
                self.warn(f"{stage}: {default or output} is missing from {self.stage_dir(stage)}")
            return None
        return self.json_at(p, stage)

    def json_at(self, path: str, stage: str) -> Any | None:
        try:
            return storage.read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self.warn(f"{stage}: {path} is not valid JSON ({e}); the numbers from it are left out")
        except OSError as e:
            self.warn(f"{stage}: cannot read {path} ({e})")
        return None

    def rows(self, path: str, stage: str, columns: list[str] | None = None) -> list[dict] | None:
        """Rows of a Parquet file or dataset folder; None with a warning if unreadable."""
        import pyarrow.parquet as pq

        try:
            fs, p = storage.fs_and_path(path)
            return pq.read_table(p, columns=columns, filesystem=fs).to_pylist()
        except Exception as e:  # pyarrow raises several types for bad or foreign files
            self.warn(f"{stage}: cannot read Parquet {path} ({type(e).__name__}: {e})")
            return None

    def bytes_at(self, path: str, stage: str) -> bytes | None:
        try:
            fs, p = storage.fs_and_path(path)
            with fs.open(p, "rb") as f:
                return f.read()
        except OSError as e:
            self.warn(f"{stage}: cannot read {path} ({e})")
            return None

    def glob(self, stage: str, pattern: str) -> list[str]:
        """Files under the stage dir matching `pattern` (fsspec glob, `**` allowed), sorted."""
        fs, base = storage.fs_and_path(self.stage_dir(stage))
        if not fs.exists(base):
            return []
        proto = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
        found = sorted(fs.glob(f"{base}/{pattern}"))
        return found if proto in ("file", "local") else [f"{proto}://{p}" for p in found]
