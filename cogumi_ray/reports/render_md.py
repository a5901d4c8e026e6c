"""report.md: the same sections and tables as report.html, with the PNGs referenced from
report_assets/ next to it (Markdown viewers do not render data: URIs reliably)."""

from __future__ import annotations

from cogumi_ray.reports.doc import Block, Code, Figure, Note, Report, Stats, Table, Text

ASSETS = "report_assets"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> list[str]:
    align = ["---:" if i in t.numeric else "---" for i in range(len(t.header))]
    out = [f"*{t.caption}*", ""] if t.caption else []
    out += ["| " + " | ".join(_cell(h) or " " for h in t.header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in t.rows]
    return [*out, ""]


def _block(b: Block) -> list[str]:
    if isinstance(b, Text):
        return [b.text, ""]
    if isinstance(b, Note):
        return [f"> **⚠** {b.text}" if b.kind == "warn" else f"*{b.text}*", ""]
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return [f"![{b.caption or b.name}]({ASSETS}/{b.name})", ""]
    if isinstance(b, Code):
        return [*([f"**{b.caption}**", ""] if b.caption else []), "```", b.text, "```", ""]
    if isinstance(b, Stats):
        return [*[f"- **{label}:** {value}" + (f" ({detail})" if detail else "")
                  for label, value, detail in b.items], ""]
    raise TypeError(f"unknown report block {type(b).__name__}")


def render(report: Report) -> str:
    lines = [f"# {report.title}", "", report.subtitle, ""]
    lines += [f"- [{s.title}](#{s.anchor})" for s in report.sections] + [""]
    if report.warnings:
        lines += [f"## Warnings ({len(report.warnings)})", ""]
        lines += [f"- {w}" for w in report.warnings] + [""]
    for s in report.sections:
        lines += [f'<a id="{s.anchor}"></a>', "", f"## {s.title}", ""]
        for b in s.blocks:
            lines += _block(b)
    return "\n".join(lines).rstrip() + "\n"
