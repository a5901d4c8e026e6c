"""Stage timings: seconds, status and start time of every stage (manifest), in pipeline order."""

from __future__ import annotations

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table
from cogumi_ray.reports.fmt import DASH, is_num, seconds
from cogumi_ray.reports.load import RunData

STATUS_COLOURS = {"done": plots.PALETTE[0], "failed": plots.PALETTE[3], "running": plots.PALETTE[1]}


def _clock(stamp: str | None) -> str:
    """'2026-12-02T10:15:57+00:00' -> '2026-12-02 10:15:57' (the manifest writes UTC)."""
    return stamp.replace("T", " ").removesuffix("+00:00") if stamp else DASH


def stage_order(run: RunData) -> list[str]:
    from cogumi_ray.pipeline import STAGES

    order = {s.name: i for i, s in enumerate(STAGES)}
    return sorted(run.manifest.stages, key=lambda s: order.get(s, len(order)))


def section(run: RunData) -> Section:
    sec = Section("Stage timings", "timings")
    names = stage_order(run)
    if not names:
        sec.add(Note("no stage has run yet"))
        return sec
    recs = [run.manifest.stages[n] for n in names]
    total = sum(r.seconds for r in recs if is_num(r.seconds))
    rows = [[n, r.status, seconds(r.seconds),
             f"{100 * r.seconds / total:.1f}%" if is_num(r.seconds) and total else DASH,
             _clock(r.started_at), _clock(r.finished_at)] for n, r in zip(names, recs, strict=True)]
    rows.append(["total", "", seconds(total), "100%" if total else DASH, "", ""])
    sec.add(Table(["stage", "status", "seconds", "share", "started (UTC)", "finished (UTC)"], rows,
                  numeric=(2, 3), total_row=True))
    timed = [(n, r) for n, r in zip(names, recs, strict=True) if is_num(r.seconds)]
    if timed:
        sec.add(Figure("stage_timings.png", plots.hbars(
            [n for n, _ in timed], [r.seconds for _, r in timed], "Seconds per stage", "seconds",
            [f"{r.seconds:.1f} s" for _, r in timed],
            [STATUS_COLOURS.get(r.status, plots.PALETTE[7]) for _, r in timed]), "Stage timings"))
    return sec
