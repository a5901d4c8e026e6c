"""Failure clusters (failures/report.json): label, size, domain mix and one example each."""

from __future__ import annotations

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Section, Table, Text
from cogumi_ray.reports.fmt import clip, is_num, num, rate
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, expect, gate


def section(run: RunData) -> Section:
    sec = Section("Failure clusters", "failures")
    if not gate(run, sec, "failures"):
        return sec
    inline = Inline(run, sec)
    rep = expect(inline, "failures", "report.json", inline.json("failures", "report", "report.json"),
                 dict)
    if rep is None:
        return sec
    clusters = [c for c in expect(inline, "failures", "clusters", rep.get("clusters"), list) or []
                if isinstance(c, dict)]
    clusters.sort(key=lambda c: -c["size"] if is_num(c.get("size")) else 0)
    if (j := run.metrics("judge")) and is_num(j.get("pass_rate")):
        # Unjudged rows (judge errors) are outside the pass rate's denominator.
        judged = j["rows"] - j.get("unjudged", 0) if is_num(j.get("rows")) else None
        sec.add(Text(f"Judge ({j.get('judge', '?')}) on {num(j.get('rows'))} generated answers: "
                     f"pass rate {rate(j['pass_rate'], j.get('passed'), judged)}, "
                     f"{num(j.get('failure_rows', j.get('failed')))} failures kept for analysis"
                     + (f", cost ${j['cost_usd']:.2f}" if is_num(j.get("cost_usd")) else "") + "."))
    sil = rep.get("silhouette")
    best = sil.get(str(rep.get("k"))) if isinstance(sil, dict) else sil
    sec.add(Text(f"{num(rep.get('failures'))} judged failures in {num(rep.get('k', len(clusters)))} "
                 f"clusters (k chosen by {rep.get('k_selection', '?')}; silhouette {num(best, 3)})."))
    total = sum(c["size"] for c in clusters if is_num(c.get("size"))) or 1
    rows = []
    for c in clusters:
        doms = c.get("domains") if isinstance(c.get("domains"), dict) else {}
        ex = next(iter(c.get("examples") or []), {})
        example = (f"{clip(ex.get('instruction', ''), 80)} → {clip(ex.get('rationale', ''), 60)}"
                   if isinstance(ex, dict) and ex else "")
        rows.append([num(c.get("cluster")), str(c.get("label", "")), num(c.get("size")),
                     f"{100 * c['size'] / total:.1f}%" if is_num(c.get("size")) else "",
                     ", ".join(f"{d} {num(n)}" for d, n in doms.items()), example])
    if rows:
        sec.add(Table(["#", "label (top terms)", "size", "share", "domains", "example"], rows,
                      "Failure clusters, largest first", numeric=(0, 2, 3)))
        sized = [c for c in clusters if is_num(c.get("size"))]
        sec.add(Figure("failure_clusters.png", plots.hbars(
            [clip(str(c.get("label", c.get("cluster"))), 42) for c in sized], [c["size"] for c in sized],
            "Failures per cluster", "failures"), "Failure cluster sizes"))
    return sec
