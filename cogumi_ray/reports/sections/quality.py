"""Pass rates: the base per domain × difficulty (eval_base), before/after distillation, and the
final evaluation's benchmarks and gates (eval)."""

from __future__ import annotations

import json
from typing import Any

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table, Text
from cogumi_ray.reports.fmt import DASH, is_num, num, pct, pp, rate
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, expect, gate

Counts = dict[tuple[str, str], list[int]]  # (domain, difficulty) -> [passed, total]


def ordered(found: set[str], canonical: tuple[str, ...]) -> list[str]:
    return [x for x in canonical if x in found] + sorted(found - set(canonical))


def _axes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from cogumi_ray.data.config import DIFFICULTIES, DOMAINS

    return DOMAINS, DIFFICULTIES


def crosstab(rows: list[dict]) -> Counts:
    """Per-item verdicts of the suite (items.parquet, `group` holds domain and difficulty as JSON)."""
    out: Counts = {}
    for r in rows:
        if r.get("benchmark", "suite") != "suite":
            continue
        try:
            g = json.loads(r.get("group") or "{}")
        except (TypeError, ValueError):
            continue
        if not isinstance(g, dict) or "domain" not in g or "difficulty" not in g:
            continue
        c = out.setdefault((str(g["domain"]), str(g["difficulty"])), [0, 0])
        c[0] += bool(r.get("passed"))
        c[1] += 1
    return out


def tally(rows: list[dict]) -> Counts:
    """Per-row verdicts with `domain` and `difficulty` columns (scores.parquet, routed rows)."""
    out: Counts = {}
    for r in rows:
        c = out.setdefault((str(r.get("domain")), str(r.get("difficulty"))), [0, 0])
        c[0] += bool(r.get("passed"))
        c[1] += 1
    return out


def totals(counts: Counts) -> tuple[dict[str, tuple[Any, Any]], tuple[Any, Any, Any]]:
    """`grid`'s margins and overall (rate, passed, total) summed from the cells themselves, for
    sources that have no score file of their own."""
    sums: dict[str, list[int]] = {}
    for (d, f), (p, n) in counts.items():
        for k in (d, f):
            s = sums.setdefault(k, [0, 0])
            s[0], s[1] = s[0] + p, s[1] + n
    passed, total = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    return ({k: (p / n, n) for k, (p, n) in sums.items() if n},
            (passed / total if total else None, passed, total))


def grid(sec: Section, counts: Counts, margins: dict[str, tuple[Any, Any]],
         overall: tuple[Any, Any, Any], who: str, png_name: str | None) -> None:
    """Domain × difficulty table (cells from items, margins from the stage's own score file or
    `totals`) and, unless `png_name` is None, its heatmap."""
    doms_c, diffs_c = _axes()
    doms = ordered({d for d, _ in counts} | {k for k in margins if k not in diffs_c}, doms_c)
    diffs = ordered({f for _, f in counts} | {k for k in margins if k in diffs_c}, diffs_c)

    def cell(d: str, f: str) -> str:
        c = counts.get((d, f))
        return rate(c[0] / c[1], c[0], c[1]) if c and c[1] else DASH

    def margin(k: str) -> str:
        v, n = margins.get(k, (None, None))
        return f"{pct(v)} (n={n})" if is_num(v) and is_num(n) else pct(v)

    rows = [[d, *[cell(d, f) for f in diffs], margin(d)] for d in doms]
    rows.append(["all", *[margin(f) for f in diffs], rate(*overall)])
    sec.add(Table(["domain", *diffs, "all"], rows, f"{who}: pass rate per domain × difficulty",
                  numeric=tuple(range(1, len(diffs) + 2)), total_row=True))
    if counts and png_name:
        matrix = [[(c[0] / c[1]) if (c := counts.get((d, f))) and c[1] else None for f in diffs]
                  for d in doms]
        top = max([v for r in matrix for v in r if v is not None] + [0.05])
        sec.add(Figure(png_name, plots.heatmap(matrix, doms, diffs, f"{who}: pass rate",
                                               lambda v: pct(v), 0.0, top, colorbar="pass rate"),
                       f"{who}: pass rate per domain × difficulty"))


def _items(run: RunData, inline: Inline, stage: str) -> Counts:
    path = run.path(stage, "items", "items.parquet")
    if path is None:
        inline.sec.add(Note(f"{stage}: no items.parquet, so no domain × difficulty cells"))
        return {}
    rows = inline.rows(path, stage, ["benchmark", "passed", "group"])
    return crosstab(rows or [])


def base_section(run: RunData) -> Section:
    sec = Section("Base model pass rates", "base")
    if not gate(run, sec, "eval_base"):
        return sec
    inline = Inline(run, sec)
    score = expect(inline, "eval_base", "score.json", inline.json("eval_base", "score", "score.json"),
                   dict)
    if score is None:
        return sec
    margins = {k.split(".", 1)[1]: (v, score.get(f"total.{k.split('.', 1)[1]}"))
               for k, v in score.items() if k.startswith("pass_rate.")}
    grid(sec, _items(run, inline, "eval_base"), margins,
         (score.get("pass_rate"), score.get("passed"), score.get("total")), "Base", "base_pass_rates.png")
    if is_num(score.get("pre_sft.pass_rate")):
        pre = rate(score["pre_sft.pass_rate"], score.get("pre_sft.passed"), score.get("pre_sft.total"))
        sec.add(Text(f"Before SFT (the untrained model, same suite): {pre}."))
    return sec


def _distill_scores(rep: dict | None, m: dict) -> tuple[dict, dict]:
    scores = (rep or {}).get("scores")
    if isinstance(scores, dict) and isinstance(scores.get("before"), dict):
        return scores["before"], scores.get("after") or {}
    # No report.json: the same numbers are in the manifest, with before/after in the key.
    before = {k.replace("pass_rate_before", "pass_rate"): v for k, v in m.items()
              if k.startswith("pass_rate_before")}
    after = {k.replace("pass_rate_after", "pass_rate"): v for k, v in m.items()
             if k.startswith("pass_rate_after")}
    return before, after


def distill_section(run: RunData) -> Section:
    sec = Section("After distillation", "distill")
    if not gate(run, sec, "distill"):
        return sec
    inline = Inline(run, sec)
    m = run.metrics("distill")
    rep = expect(inline, "distill", "report.json",
                 inline.json("distill", "report", "report.json", required=False), dict)
    before, after = _distill_scores(rep, m)
    doms_c, diffs_c = _axes()
    keys = ordered({k.split(".", 1)[1] for k in before if "." in k and k.startswith("pass_rate.")}
                   - set(diffs_c), doms_c)
    rows = []
    for k in [*keys, *[d for d in diffs_c if f"pass_rate.{d}" in before]]:
        b, a = before.get(f"pass_rate.{k}"), after.get(f"pass_rate.{k}")
        rows.append([k, pct(b), pct(a), pp(100 * (a - b)) if is_num(a) and is_num(b) else DASH])
    b, a = before.get("pass_rate"), after.get("pass_rate")
    rows.append(["all", rate(b, before.get("passed"), before.get("total")),
                 rate(a, after.get("passed"), after.get("total")),
                 pp(100 * (a - b)) if is_num(a) and is_num(b) else DASH])
    sec.add(Table(["slice", "before", "after", "change"], rows,
                  "Held-out pass rate before and after the distillation retrain", numeric=(1, 2, 3),
                  total_row=True))
    if keys:
        sec.add(Figure("distill_pass_rates.png", plots.grouped_bars(
            keys, {"before": [before.get(f"pass_rate.{k}") for k in keys],
                   "after": [after.get(f"pass_rate.{k}") for k in keys]},
            "Pass rate per domain, before vs after distillation", "pass rate", lambda v: pct(v),
            percent=True),
            "Distillation: pass rate per domain"))
    facts = [("teacher", m.get("teacher")), ("failures in", m.get("failures_in")),
             ("self-critique fixed", m.get("self_critique_fixed")),
             ("teacher corrections kept", m.get("teacher_kept")),
             ("correction rows", m.get("dataset_rows")), ("replay rows", m.get("replay_rows")),
             ("dedup dropped", m.get("dedup_dropped")), ("retrain steps", m.get("train_steps"))]
    if data_rows := [[k, num(v)] for k, v in facts if v is not None]:
        sec.add(Table(["distillation data", "value"], data_rows, numeric=(1,)))
    return sec


def eval_section(run: RunData) -> Section:
    sec = Section("Final evaluation", "eval")
    if not gate(run, sec, "eval"):
        return sec
    inline = Inline(run, sec)
    rep = expect(inline, "eval", "report.json", inline.json("eval", "report", "report.json"), dict)
    if rep is None:
        return sec
    scores = expect(inline, "eval", "scores", rep.get("scores"), dict) or {}
    rows = [[b, rate(s.get("score"), s.get("passed"), s.get("total"))]
            for b, s in scores.items() if isinstance(s, dict)]
    if rows:
        sec.add(Table(["benchmark", "pass rate"], rows, "Benchmarks of the final model", numeric=(1,)))
    gates = rep.get("gates") or {}
    if isinstance(gates, dict) and gates:
        failed = set(rep.get("failed_gates") or [])
        sec.add(Table(["gate", "value", "result"],
                      [[g, num(v), "FAILED" if g in failed else "passed"] for g, v in gates.items()],
                      "Quality gates"))
    suite = scores.get("suite")
    if isinstance(suite, dict):
        margins = {k: (v.get("score"), v.get("total")) for part in ("domain", "difficulty")
                   for k, v in (suite.get(part) or {}).items() if isinstance(v, dict)}
        grid(sec, _items(run, inline, "eval"), margins,
             (suite.get("score"), suite.get("passed"), suite.get("total")), "Final model",
             "final_pass_rates.png")
    return sec
