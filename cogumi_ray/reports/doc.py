"""The report as data: sections of blocks that both renderers (HTML and Markdown) walk.

Sections build blocks from measured values only; the renderers decide the look. Keeping one model
is what makes report.html and report.md carry the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Note:
    """A short status line: 'muted' (not run, nothing to show) or 'warn' (unreadable input)."""

    text: str
    kind: str = "muted"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    # Indices of columns holding numbers: right-aligned in HTML, so digits line up.
    numeric: tuple[int, ...] = ()
    # The last row is a total ("all"): set apart in bold.
    total_row: bool = False


@dataclass(frozen=True)
class Figure:
    """A PNG: embedded as a data: URI in HTML, written to report_assets/<name> for Markdown."""

    name: str
    png: bytes
    caption: str = ""
    # Consecutive figures sit two per row in HTML; a wide one takes the whole row.
    wide: bool = False


@dataclass(frozen=True)
class Code:
    text: str
    caption: str = ""


@dataclass(frozen=True)
class Stats:
    """Headline numbers shown as tiles: (label, value, detail)."""

    items: list[tuple[str, str, str]]


Block = Text | Note | Table | Figure | Code | Stats


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    warnings: list[str]

    def figures(self) -> list[Figure]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Figure)]
