"""Matplotlib charts rendered straight to PNG bytes.

`matplotlib.figure.Figure` is used without pyplot: no global state and no GUI backend, so
building a report from a Ray worker or a headless CI box needs no `MPLBACKEND` setting.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

PALETTE = ("#3b6ea8", "#e07b39", "#4c9a5f", "#b8474b", "#7e62a8", "#8c6d4f", "#c9669e", "#6b7a8f")
Cell = float | None


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    fig.patch.set_facecolor("white")
    return fig


def _style(ax: Any, title: str, xlabel: str = "", ylabel: str = "") -> None:
    ax.set_title(title, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, axis="both", alpha=0.25, linewidth=0.6)
    ax.set_axisbelow(True)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _mantissa(v: float) -> int:
    import math

    return round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0


def lines(series: Sequence[tuple[str, Sequence[float], Sequence[float], bool]], title: str,
          xlabel: str, ylabel: str, log_y: bool = False) -> bytes:
    """Line chart; each series is (label, xs, ys, dashed). Equal labels share a colour."""
    fig = _figure(6.2, 3.4)  # sized for half the report's width, where charts sit in pairs
    ax = fig.add_subplot()
    colours: dict[str, str] = {}
    for label, xs, ys, dashed in series:
        key = label.split(" ")[0]
        colour = colours.setdefault(key, PALETTE[len(colours) % len(PALETTE)])
        ax.plot(xs, ys, linestyle="--" if dashed else "-", marker="o" if len(xs) <= 12 else None,
                markersize=3, linewidth=1.4, color=colour, label=label)
    if log_y:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        # Plain numbers ('0.5', not '5×10⁻¹'), and minor labels only at 2, 3 and 5 per decade so
        # they do not pile up near the bottom of each decade.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(
            FuncFormatter(lambda v, _: f"{v:g}" if _mantissa(v) in (2, 3, 5) else ""))
    _style(ax, title, xlabel, ylabel)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def heatmap(matrix: Sequence[Sequence[Cell]], rows: Sequence[str], cols: Sequence[str], title: str,
            label: Callable[[float], str], vmin: float, vmax: float, cmap: str = "viridis",
            colorbar: str = "", xlabel: str = "", ylabel: str = "") -> bytes:
    """A matrix with each cell's value written in it; None cells stay blank (no data)."""
    import numpy as np

    data = np.array([[np.nan if v is None else float(v) for v in r] for r in matrix], dtype=float)
    fig = _figure(1.6 + 1.05 * len(cols), 1.0 + 0.42 * len(rows))
    ax = fig.add_subplot()
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), fontsize=8)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    ax.set_title(title, fontsize=11, loc="left", fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    mid = (vmin + vmax) / 2
    for i, r in enumerate(matrix):
        for j, v in enumerate(r):
            if v is None:
                continue
            # Dark text on the light half of the colour scale, light text on the dark half.
            light = (v > mid) if cmap == "viridis" else abs(v - mid) < (vmax - vmin) / 4
            ax.text(j, i, label(v), ha="center", va="center", fontsize=8,
                    color="black" if light else "white")
    bar = fig.colorbar(im, ax=ax, shrink=0.85)
    bar.ax.tick_params(labelsize=7)
    if colorbar:
        bar.set_label(colorbar, fontsize=8)
    return _png(fig)


def hbars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str,
          annotate: Sequence[str] | None = None, colours: Sequence[str] | None = None) -> bytes:
    """Horizontal bars, first label on top, each bar annotated at its end."""
    fig = _figure(7.2, 0.8 + 0.32 * len(labels))
    ax = fig.add_subplot()
    ys = range(len(labels))
    ax.barh(list(ys), list(values), color=list(colours) if colours else PALETTE[0], height=0.65)
    ax.set_yticks(list(ys), labels=list(labels))
    ax.invert_yaxis()
    top = max([float(v) for v in values] + [0.0]) or 1.0
    for y, v, text in zip(ys, values, annotate or [f"{v:,}" for v in values], strict=True):
        ax.text(float(v) + top * 0.01, y, text, va="center", fontsize=7.5)
    ax.set_xlim(0, top * 1.18)
    _style(ax, title, xlabel)
    ax.grid(False, axis="y")
    return _png(fig)


def grouped_bars(categories: Sequence[str], series: dict[str, Sequence[Cell]], title: str,
                 ylabel: str, label: Callable[[float], str], zero_line: bool = False,
                 percent: bool = False) -> bytes:
    """Bars per category, one colour per series; None values are left out."""
    fig = _figure(6.2, 3.4)
    ax = fig.add_subplot()
    n = max(len(series), 1)
    width = 0.8 / n
    for k, (name, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(categories))]
        pts = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        bars = ax.bar([x for x, _ in pts], [v for _, v in pts], width=width * 0.92,
                      color=PALETTE[k % len(PALETTE)], label=name)
        ax.bar_label(bars, labels=[label(v) for _, v in pts], fontsize=6.5, padding=1.5)
    ax.set_xticks(range(len(categories)), labels=list(categories))
    if zero_line:
        ax.axhline(0, color="#444", linewidth=0.8)
    if percent:
        from matplotlib.ticker import PercentFormatter

        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    _style(ax, title, "", ylabel)
    ax.grid(False, axis="x")
    ax.margins(y=0.15)
    ax.legend(fontsize=8, frameon=False, ncols=min(n, 4))
    return _png(fig)


def size_and_quality(names: Sequence[str], sizes_mib: Sequence[float], packed_mib: Sequence[Cell],
                     pass_rates: Sequence[Cell], branches: Sequence[str], chosen: str | None) -> bytes:
    """The compression waterfall: file size and zstd-packed size per variant (top) over the suite
    pass rate of the same variant (bottom), so a size win and its quality cost read together."""
    fig = _figure(9.0, 5.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    order = list(dict.fromkeys(branches))
    colours = [PALETTE[order.index(b) % len(PALETTE)] for b in branches]
    xs = list(range(len(names)))
    w = 0.38
    bars = top.bar([x - w / 2 for x in xs], sizes_mib, width=w, color=colours)
    top.bar_label(bars, labels=[f"{s:.2f}" for s in sizes_mib], fontsize=7, padding=1.5)
    packed = [(x, p) for x, p in zip(xs, packed_mib, strict=True) if p is not None]
    if packed:
        pb = top.bar([x + w / 2 for x, _ in packed], [p for _, p in packed], width=w,
                     color=[colours[x] for x, _ in packed], alpha=0.45)
        top.bar_label(pb, labels=[f"{p:.2f}" for _, p in packed], fontsize=7, padding=1.5,
                      color="#555")
    _style(top, "Size per variant (solid: file, light: zstd-packed)", "", "MiB")
    top.grid(False, axis="x")
    top.margins(y=0.15)
    from matplotlib.patches import Patch

    handles = [Patch(color=PALETTE[i % len(PALETTE)], label=b) for i, b in enumerate(order)]
    top.legend(handles=handles, fontsize=8, frameon=False, loc="upper right")
    rates = [100 * r if r is not None else 0.0 for r in pass_rates]
    qb = bottom.bar(xs, rates, width=0.55, color=colours)
    bottom.bar_label(qb, labels=[f"{100 * r:.1f}%" if r is not None else "not measured"
                                 for r in pass_rates], fontsize=7, padding=1.5)
    _style(bottom, "Suite pass rate", "", "%")
    bottom.grid(False, axis="x")
    bottom.set_ylim(0, max(rates + [1.0]) * 1.3)
    bottom.set_xticks(xs, labels=[f"{n} (chosen)" if n == chosen else n for n in names],
                      rotation=20, ha="right")
    return _png(fig)


def xy(points: Sequence[tuple[float, float]], title: str, xlabel: str, ylabel: str,
       diagonal: tuple[tuple[float, float], tuple[float, float]] | None = None) -> bytes:
    """One curve of points, sorted by x; an optional dashed reference segment (e.g. random)."""
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    pts = sorted(points)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", markersize=3, color=PALETTE[0])
    if diagonal:
        (x0, y0), (x1, y1) = diagonal
        ax.plot([x0, x1], [y0, y1], "--", color="#888", linewidth=1, label="random")
        ax.legend(fontsize=8, frameon=False)
    _style(ax, title, xlabel, ylabel)
    return _png(fig)


def quality_cost(points: Sequence[tuple[float, float]], weak: float, strong: float,
                 oracle: float | None, title: str, operating: tuple[float, float] | None = None) -> bytes:
    """Pass rate against the share of modifier calls, with RouteLLM's anchors: random routing (the
    dashed segment from base-only at share 0 to always-best-modifier at share 1) and the oracle."""
    fig = _figure(6.2, 3.6)
    ax = fig.add_subplot()
    pts = sorted(points)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", markersize=3, linewidth=1.4,
            color=PALETTE[0], label="router (cut sweep)")
    ax.plot([0, 1], [weak, strong], "--", color="#888", linewidth=1, label="random")
    ax.scatter([0], [weak], color="black", marker="o", zorder=3, label="base only")
    ax.scatter([1], [strong], color="black", marker="s", zorder=3, label="always best modifier")
    if oracle is not None:
        ax.axhline(oracle, color=PALETTE[2], linestyle=":", linewidth=1.2, label="oracle")
    if operating is not None:
        ax.scatter([operating[0]], [operating[1]], color=PALETTE[1], marker="*", s=90, zorder=4,
                   label="configured policy")
    from matplotlib.ticker import PercentFormatter

    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    _style(ax, title, "share of modifier calls", "pass rate")
    ax.legend(fontsize=7.5, frameon=False, loc="lower right")
    return _png(fig)
