"""Data funnel: rows in and out of every curation step (curate/report.json), the duplicate
clusters the MinHash dedup found (one or two examples), and the split sizes."""

from __future__ import annotations

from typing import Any

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table, Text
from cogumi_ray.reports.fmt import clip, is_num, num
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, expect, gate


def _reasons(d: Any) -> str:
    if not isinstance(d, dict) or not d:
        return ""
    ordered = sorted(d.items(), key=lambda kv: -kv[1] if is_num(kv[1]) else 0)  # biggest first
    return ", ".join(f"{k} {num(v)}" for k, v in ordered)


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def funnel_steps(rep: dict) -> list[tuple[str, Any, Any, str]]:
    """(step, rows in, rows out, detail) in the order curation applies them."""
    bal = _dict(rep.get("balance"))
    steps: list[tuple[str, Any, Any, str]] = []
    if is_num(bal.get("rows_in")):
        q = bal.get("quarantined", 0)
        steps.append(("read + parse", bal["rows_in"], bal["rows_in"] - q if is_num(q) else None,
                      "quarantined: " + (_reasons(rep.get("quarantine_reasons")) or num(q))))
    for f in rep.get("filters") if isinstance(rep.get("filters"), list) else []:
        if not isinstance(f, dict):
            continue
        detail = _reasons(f.get("dropped"))
        counts = {k: v for k, v in _dict(f.get("counts")).items() if k.startswith("rows_with")}
        if counts:  # a filter that rewrites rather than drops (PII scrub) says how many it touched
            detail = "; ".join(x for x in (detail, _reasons(counts)) if x)
        steps.append((f"filter: {f.get('filter', '?')}", f.get("rows_in"), f.get("rows_out"), detail))
    dd = _dict(rep.get("dedup"))
    if is_num(dd.get("rows_in")) and is_num(dd.get("exact_dropped")):
        mid = dd["rows_in"] - dd["exact_dropped"]
        steps.append(("dedup: exact", dd["rows_in"], mid, f"{num(dd.get('exact_clusters'))} clusters"))
        steps.append(("dedup: near (MinHash LSH)", mid, dd.get("rows_out"),
                      f"{num(dd.get('clusters'))} clusters; {num(dd.get('candidate_pairs'))} "
                      f"candidate pairs, {num(dd.get('verified_pairs'))} verified"))
    return steps


def _funnel(sec: Section, rep: dict) -> None:
    steps = funnel_steps(rep)
    if not steps:
        sec.add(Note("curate: report.json has no filter counts"))
        return
    rows = []
    for step, a, b, detail in steps:
        dropped = a - b if is_num(a) and is_num(b) else None
        rows.append([step, num(a), num(b), num(dropped), detail])
    sec.add(Table(["step", "rows in", "rows out", "dropped", "detail"], rows,
                  "Rows in and out of each curation step", numeric=(1, 2, 3)))
    labels = [steps[0][0].replace("read + parse", "raw rows")] + [s[0] for s in steps]
    values = [steps[0][1]] + [s[2] for s in steps]
    if all(is_num(v) for v in values):
        sec.add(Figure("data_funnel.png", plots.hbars(
            labels, values, "Rows remaining after each step", "rows",
            [f"{v:,}" for v in values]), "Data funnel"))


def _clusters(sec: Section, rep: dict, inline: Inline) -> None:
    examples = expect(inline, "curate", "dedup.cluster_examples",
                      _dict(rep.get("dedup")).get("cluster_examples"), list) or []
    picked: list[dict] = []
    for kind in ("exact", "near"):  # one of each kind shows what each pass catches
        picked += [c for c in examples if isinstance(c, dict) and c.get("kind") == kind][:1]
    picked = picked or [c for c in examples if isinstance(c, dict)][:2]
    if not picked:
        return
    rows = []
    for i, c in enumerate(picked, 1):
        for m in [m for m in c.get("members") or [] if isinstance(m, dict)]:
            kept = "kept" if m.get("id") == c.get("kept") else "dropped"
            rows.append([f"#{i} {c.get('kind', '?')} ({num(c.get('size'))} rows)", str(m.get("id")),
                         kept, clip(str(m.get("snippet", "")).replace("\n", " ⏎ "), 140)])
    sec.add(Table(["cluster", "row id", "", "text"], rows,
                  f"Duplicate clusters: {len(picked)} of {len(examples)} recorded examples"))


def _splits(sec: Section, rep: dict) -> None:
    splits = rep.get("splits")
    if not isinstance(splits, dict) or not splits:
        return
    domains = sorted({d for s in splits.values() if isinstance(s, dict) for d in _dict(s.get("by_domain"))})
    rows = [[name, num(s.get("rows")), *[num(_dict(s.get("by_domain")).get(d)) for d in domains]]
            for name, s in splits.items() if isinstance(s, dict)]
    if not rows:
        return
    sec.add(Table(["split", "rows", *domains], rows, "Curated splits by domain",
                  numeric=tuple(range(1, 2 + len(domains)))))


def section(run: RunData) -> Section:
    sec = Section("Data funnel", "data")
    if not gate(run, sec, "curate"):
        return sec
    inline = Inline(run, sec)
    rep = expect(inline, "curate", "report.json", inline.json("curate", "report", "report.json"), dict)
    if rep is None:
        return sec
    if summary := run.metrics("curate").get("summary"):
        sec.add(Text(str(summary)))
    _funnel(sec, rep)
    _clusters(sec, rep, inline)
    _splits(sec, rep)
    return sec
