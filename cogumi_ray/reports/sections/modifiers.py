"""Per-modifier quality: each LoRA adapter's uplift on its own domain (manifest metrics, the
numbers the stage flags adapters by), on every domain, and per domain × difficulty for the base
and each adapter (scores.parquet, test split)."""

from __future__ import annotations

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table
from cogumi_ray.reports.fmt import DASH, is_num, num, pct, pp
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, gate
from cogumi_ray.reports.sections.quality import _axes, grid, ordered, tally, totals

BASE = "base"  # the option name of the un-adapted model in scores.parquet
COLUMNS = ["split", "id", "domain", "difficulty", "option", "passed"]


def held_out_split(rows: list[dict]) -> str:
    """The split the report measures on: the held-out 'test' rows, 'val' for older runs."""
    return "test" if any(r.get("split") == "test" for r in rows) else "val"


def options_of(rows: list[dict]) -> list[str]:
    """The base first, then the adapters in domain order."""
    return [BASE, *ordered({str(r.get("option")) for r in rows} - {BASE}, _axes()[0])]


def _option_grids(sec: Section, rows: list[dict], split: str) -> None:
    """One domain × difficulty table per option (the base's table format), all from scores.parquet."""
    held = [r for r in rows if r.get("split") == split]
    for o in options_of(held):
        counts = tally([r for r in held if str(r.get("option")) == o])
        if counts:
            who = "Base" if o == BASE else f"Base + {o} adapter"
            grid(sec, counts, *totals(counts), f"{who} ({split} split)", None)


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
    score_rows = (Inline(run, sec).rows(path, "modifiers", COLUMNS) or []) if path else []
    split = held_out_split(score_rows)
    if uplift := _uplift_grid(_per_domain(score_rows, split), split):
        sec.add(uplift[0])
        figures.append(uplift[1])
    sec.add(*figures)  # side by side: own-domain uplift next to the all-domains heatmap
    _option_grids(sec, score_rows, split)
    if path is None:
        sec.add(Note("modifiers: no scores.parquet, so no pass rates per domain × difficulty"
                     if domains else "modifiers: no adapter metrics and no scores.parquet"))
    return sec
