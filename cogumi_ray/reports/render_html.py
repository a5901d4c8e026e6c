"""report.html: one self-contained file (inline CSS, PNGs as data: URIs, no script, no external
URL), so it opens offline, from an artifact store, or attached to a mail."""

from __future__ import annotations

import base64
from html import escape

from cogumi_ray.reports.doc import Block, Code, Figure, Note, Report, Section, Stats, Table, Text

CSS = """
:root { --ink:#1f2933; --muted:#6b7785; --line:#e3e7ec; --bg:#f6f7f9; --accent:#3b6ea8;
        --warn-bg:#fff6e0; --warn-line:#e5b94e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background:#1f2f46; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c5d1e0; font-size:13px; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; font-size:13px; }
nav a { color:var(--accent); text-decoration:none; margin-right:16px; white-space:nowrap; }
main { max-width:1180px; margin:0 auto; padding:20px 32px 48px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 22px 18px;
          margin:0 0 18px; }
h2 { font-size:17px; margin:0 0 10px; padding-bottom:6px; border-bottom:2px solid var(--line); }
p { margin:6px 0 10px; }
.note { color:var(--muted); font-style:italic; margin:6px 0; }
.warn { background:var(--warn-bg); border-left:4px solid var(--warn-line); padding:6px 10px;
        margin:8px 0; font-style:normal; color:#5c4400; }
.warnings { background:var(--warn-bg); border:1px solid var(--warn-line); border-radius:8px;
            padding:10px 18px; margin:0 0 18px; }
.warnings h2 { border:none; margin:0 0 4px; padding:0; color:#7a5800; }
.table-wrap { overflow-x:auto; margin:8px 0 14px; }
table { border-collapse:collapse; font-size:13px; min-width:40%; }
caption { text-align:left; font-weight:600; color:var(--muted); font-size:12px; padding:0 0 4px;
          caption-side:top; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#eef2f6; font-weight:600; white-space:nowrap; }
tbody tr:nth-child(even) td { background:#fafbfc; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tbody tr:last-child td { border-bottom:none; }
.figs { display:grid; grid-template-columns:repeat(auto-fit, minmax(460px, 1fr)); gap:14px;
        margin:10px 0 14px; }
figure { margin:0; }
figure.wide { grid-column:1 / -1; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
table.total tbody tr:last-child td { font-weight:600; border-top:2px solid var(--line); }
figcaption { color:var(--muted); font-size:12px; margin-top:2px; }
pre { background:#f3f5f7; border:1px solid var(--line); border-radius:4px; padding:8px 10px;
      overflow-x:auto; font-size:12px; }
.stats { display:flex; flex-wrap:wrap; gap:12px; margin:4px 0 6px; }
.stat { flex:1 1 140px; border:1px solid var(--line); border-radius:6px; padding:10px 14px;
        background:#fbfcfd; }
.stat .v { font-size:20px; font-weight:600; color:var(--accent); }
.stat .l { font-size:12px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
.stat .d { font-size:12px; color:var(--muted); }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 0 24px; }
"""


def _table(t: Table) -> str:
    def cls(i: int) -> str:
        return ' class="n"' if i in t.numeric else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(t.header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{escape(c)}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in t.rows)
    cap = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    total = ' class="total"' if t.total_row else ""
    return (f'<div class="table-wrap"><table{total}>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _block(b: Block) -> str:
    if isinstance(b, Text):
        return f"<p>{escape(b.text)}</p>"
    if isinstance(b, Note):
        if b.kind == "warn":
            return f'<p class="note warn">⚠ {escape(b.text)}</p>'
        return f'<p class="note">{escape(b.text)}</p>'
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        cap = f"<figcaption>{escape(b.caption)}</figcaption>" if b.caption else ""
        return (f'<figure{" class=wide" if b.wide else ""}><img alt="{escape(b.caption or b.name)}" '
                f'src="data:image/png;base64,{data}">{cap}</figure>')
    if isinstance(b, Code):
        cap = f"<p><strong>{escape(b.caption)}</strong></p>" if b.caption else ""
        return f"{cap}<pre>{escape(b.text)}</pre>"
    if isinstance(b, Stats):
        tiles = "".join(f'<div class="stat"><div class="l">{escape(label)}</div><div class="v">'
                        f'{escape(value)}</div><div class="d">{escape(detail)}</div></div>'
                        for label, value, detail in b.items)
        return f'<div class="stats">{tiles}</div>'
    raise TypeError(f"unknown report block {type(b).__name__}")


def _blocks(blocks: list[Block]) -> str:
    """Blocks in order, runs of consecutive figures wrapped in one two-column grid."""
    out: list[str] = []
    figs: list[str] = []
    for b in blocks:
        if isinstance(b, Figure):
            figs.append(_block(b))
            continue
        if figs:
            out.append(f'<div class="figs">{"".join(figs)}</div>')
            figs = []
        out.append(_block(b))
    if figs:
        out.append(f'<div class="figs">{"".join(figs)}</div>')
    return "".join(out)


def _section(s: Section) -> str:
    return f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>{_blocks(s.blocks)}</section>'


def render(report: Report) -> str:
    nav = "".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in report.sections)
    warnings = ""
    if report.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
        warnings = (f'<div class="warnings" id="warnings"><h2>⚠ {len(report.warnings)} warning(s) while '
                    f"reading the run</h2><ul>{items}</ul></div>")
    body = "".join(_section(s) for s in report.sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(report.title)}</h1><p>{escape(report.subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{warnings}{body}</main>"
            f"<footer>Generated by cogumi_ray.reports from the run's manifest and stage files.</footer>"
            f"</body></html>\n")
