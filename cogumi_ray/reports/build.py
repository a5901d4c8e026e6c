"""The run report: `build_report(run_dir)` writes runs/<name>/report.html (self-contained) and
report.md (+ report_assets/*.png) from the manifest and the stage output files.

Every number comes from the manifest or a file a stage wrote; a stage that is missing, failed or
unreadable gives a one-line note (or a warning) in its section instead of an exception.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import datetime, timezone

from cogumi_ray import storage
from cogumi_ray.errors import RunError
from cogumi_ray.reports import render_html, render_md
from cogumi_ray.reports.doc import Figure, Note, Report, Section, Stats
from cogumi_ray.reports.fmt import is_num, mib, pct, seconds
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections import (
    compress,
    data,
    failures,
    modifiers,
    quality,
    router,
    serving,
    timings,
    training,
)

log = logging.getLogger(__name__)

HTML_NAME, MD_NAME = "report.html", "report.md"

# Pipeline order; the optional ones return None when there is nothing: router when its stage never
# ran, serving when no serving stage ran and `cogumi demo` asked no queries.
SECTIONS: tuple[tuple[str, Callable[[RunData], Section | None]], ...] = (
    ("Data funnel", data.section),
    ("Training curves", training.section),
    ("Base model pass rates", quality.base_section),
    ("Failure clusters", failures.section),
    ("After distillation", quality.distill_section),
    ("Compression", compress.section),
    ("Modifiers", modifiers.section),
    ("Router", router.section),
    ("Serving", serving.section),
    ("Final evaluation", quality.eval_section),
    ("Stage timings", timings.section),
)


def _summary(run: RunData) -> Section:
    recs = run.manifest.stages
    sec = Section("Summary", "summary")
    tiles: list[tuple[str, str, str]] = []
    if m := run.metrics("eval_base"):
        tiles.append(("base pass rate", pct(m.get("pass_rate")),
                      f"{m.get('passed')}/{m.get('total')} held-out" if is_num(m.get("total")) else ""))
    if (m := run.metrics("distill")) and is_num(m.get("pass_rate_after")):
        delta = m.get("pass_rate_delta")
        tiles.append(("after distillation", pct(m["pass_rate_after"]),
                      f"{100 * delta:+.1f} pp vs before" if is_num(delta) else ""))
    if (m := run.metrics("eval")) and is_num(m.get("suite")):
        tiles.append(("final suite", pct(m["suite"]),
                      f"{m.get('suite.passed')}/{m.get('suite.total')}" if is_num(m.get("suite.total"))
                      else ""))
    if (m := run.metrics("compress")) and m.get("chosen"):
        key = str(m["chosen"]).replace("/", "_").lower()
        size = m.get(f"{key}.size_mb")
        tiles.append(("served variant", str(m["chosen"]),
                      mib(size * 2**20) if is_num(size) else ""))
    if (m := run.metrics("modifiers")) and m.get("domains"):
        flagged = list(m.get("flagged") or [])
        tiles.append(("modifiers", str(len(m["domains"])),
                      f"{len(flagged)} flagged: {', '.join(flagged) or 'none'}"))
    total = sum(r.seconds for r in recs.values() if is_num(r.seconds))
    tiles.append(("wall time", seconds(total), f"{len(recs)} stages"))
    sec.add(Stats(tiles))
    counts: dict[str, int] = {}
    for r in recs.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    sec.add(Note("stages: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts
                 else "no stage has run yet"))
    return sec


def _build(run: RunData) -> Report:
    sections = [_summary(run)]
    for title, fn in SECTIONS:
        try:
            sec = fn(run)
        except Exception as e:  # a report bug in one section must not cost the whole report
            log.exception("report section %s failed", title)
            run.warn(f"section '{title}' could not be built ({type(e).__name__}: {e})")
            sec = Section(title, title.lower().replace(" ", "-")).add(
                Note(f"could not be built: {type(e).__name__}: {e}", "warn"))
        if sec is not None:
            sections.append(sec)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Report(f"cogumi run report: {run.name}", f"{run.run_dir} · generated {stamp}", sections,
                  run.warnings)


def _unique_names(report: Report) -> None:
    """Figure file names must not collide in report_assets/."""
    seen: set[str] = set()
    for s in report.sections:
        for i, b in enumerate(s.blocks):
            if isinstance(b, Figure) and b.name in seen:
                stem, _, ext = b.name.rpartition(".")
                n = 2
                while f"{stem}_{n}.{ext}" in seen:
                    n += 1
                s.blocks[i] = Figure(f"{stem}_{n}.{ext}", b.png, b.caption)
            seen.add(s.blocks[i].name if isinstance(s.blocks[i], Figure) else "")


def _write_assets(run_dir: str, figures: list[Figure]) -> None:
    assets = storage.join(run_dir, render_md.ASSETS)
    storage.makedirs(assets)
    fs, base = storage.fs_and_path(assets)
    keep = {f.name for f in figures}
    for old in fs.glob(f"{base}/*.png"):  # a chart the run no longer has must not linger
        if old.rsplit("/", 1)[-1] not in keep:
            fs.rm(old)
    for f in figures:
        storage.atomic_write_bytes(storage.join(assets, f.name), f.png)


def build_report(run_dir: str) -> tuple[str, str]:
    """Write report.html and report.md into `run_dir`; return their paths (html, md)."""
    run = RunData(run_dir)
    report = _build(run)
    _unique_names(report)
    html_path = storage.join(run.run_dir, HTML_NAME)
    md_path = storage.join(run.run_dir, MD_NAME)
    _write_assets(run.run_dir, report.figures())
    storage.atomic_write_text(html_path, render_html.render(report))
    storage.atomic_write_text(md_path, render_md.render(report))
    return html_path, md_path


def main(run_dir: str) -> int:
    """CLI entry (`cogumi report`): build the report, print both paths; 1 when there is no run."""
    try:
        html_path, md_path = build_report(run_dir)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"report: {html_path}")
    print(f"report: {md_path}")
    return 0
