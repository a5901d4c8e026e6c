"""Per-modifier quality: each LoRA adapter's uplift on its own domain (manifest metrics, the
numbers the stage flags adapters by) and on every domain (scores.parquet, test split)."""

from __future__ import annotations

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table
from cogumi_ray.reports.fmt import DASH, is_num, num, pct, pp
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, gate
from cogumi_ray.reports.sections.quality import _axes, ordered

BASE = "base"  # the option name of the un-adapted model in scores.parquet


def _per_domain(rows: list[dict], split: str) -> dict[str, dict[str, float]]:
    """option -> domain -> pass rate on `split`."""
    acc: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        if r.get("split") != split:
            continue
        c = acc.setdefault(str(r.get("option")), {}).setdefault(str(r.get("domain")), [0, 0])
        c[0] += bool(r.get("passed"))
        c[1] += 1
    return {o: {d: p / n for d, (p, n) in ds.items() if n} for o, ds in acc.items()}


def _uplift_grid(rates: dict[str, dict[str, float]], split: str) -> tuple[Table, Figure] | None:
    base = rates.get(BASE)
    adapters = [o for o in rates if o != BASE]
    if not base or not adapters:
        return None
    doms = ordered(set(base), _axes()[0])
    matrix = [[100 * (rates[a][d] - base[d]) if d in rates[a] else None for d in doms] for a in adapters]
    rows = [[BASE, *[pct(base.get(d)) for d in doms]]]
    rows += [[a, *[f"{pct(rates[a].get(d))} ({pp(v)})" if v is not None else DASH
                   for d, v in zip(doms, mat, strict=True)]] for a, mat in zip(adapters, matrix, strict=True)]
    table = Table(["option", *doms], rows, f"Pass rate of each adapter on every domain ({split} split; "
                  "change vs base in brackets)", numeric=tuple(range(1, len(doms) + 1)))
    top = max([abs(v) for r in matrix for v in r if v is not None] + [1.0])
    return table, Figure("modifier_uplift.png", plots.heatmap(
        matrix, [f"adapter {a}" for a in adapters], doms, "Uplift over the base (pp)",
        lambda v: f"{v:+.1f}", -top, top, cmap="RdBu", colorbar="pp vs base"),
        "Modifier uplift per domain (rows: adapter; columns: domain)")


def _own_domain(m: dict, domains: list[str], flagged: set[str]) -> tuple[Table, Figure | None]:
    rows = [[d, num(m.get(f"{d}_rank")), num(m.get(f"{d}_train_rows")),
             pct(m.get(f"{d}_base_pass_rate")), pct(m.get(f"{d}_adapter_pass_rate")),
             pp(m.get(f"{d}_uplift_pp")), pp(m.get(f"{d}_other_domains_delta_pp")),
             "FLAGGED" if d in flagged else "ok"] for d in domains]
    table = Table(["adapter", "rank", "train rows", "base (own domain)", "adapter (own domain)",
                   "uplift", "other domains", "verdict"], rows,
                  "Each adapter on its own domain (test split); flagged = no measurable uplift",
                  numeric=(1, 2, 3, 4, 5, 6))
    uplift = [m.get(f"{d}_uplift_pp") for d in domains]
    if not all(is_num(u) for u in uplift):
        return table, None
    other = [m.get(f"{d}_other_domains_delta_pp") for d in domains]
    return table, Figure("modifier_own_uplift.png", plots.grouped_bars(
        domains, {"uplift on own domain": uplift, "mean change on other domains": other},
        "Adapter uplift over the base", "percentage points", lambda v: f"{v:+.1f}", zero_line=True),
        "Uplift per adapter (manifest metrics)")


def section(run: RunData) -> Section:
    sec = Section("Modifiers (LoRA adapters)", "modifiers")
    if not gate(run, sec, "modifiers"):
        return sec
    m = run.metrics("modifiers")
    domains = [str(d) for d in m.get("domains") or []]
    flagged = set(m.get("flagged") or [])
    figures: list[Figure] = []
    if domains:
        table, fig = _own_domain(m, domains, flagged)
        sec.add(table)
        figures += [fig] if fig else []
    if flagged:
        sec.add(Note(f"flagged: {', '.join(sorted(flagged))} — these adapters do not beat the base on "
                     "their own domain by the configured minimum (modifiers.min_uplift_pp)", "warn"))
    path = run.path("modifiers", "scores", "scores.parquet")
    if path is not None:
        score_rows = Inline(run, sec).rows(path, "modifiers", ["split", "domain", "option", "passed"])
        split = "test" if any(r.get("split") == "test" for r in score_rows or []) else "val"
        if grid := _uplift_grid(_per_domain(score_rows or [], split), split):
            sec.add(grid[0])
            figures.append(grid[1])
    sec.add(*figures)  # side by side: own-domain uplift next to the all-domains heatmap
    if not domains and path is None:
        sec.add(Note("modifiers: no adapter metrics and no scores.parquet"))
    return sec
