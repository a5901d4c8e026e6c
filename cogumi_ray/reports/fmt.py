"""Number formatting shared by every section, so a value reads the same in HTML and Markdown."""

from __future__ import annotations

from typing import Any

DASH = "–"


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v  # v == v: not NaN


def pct(v: Any, digits: int = 1) -> str:
    """A 0..1 rate as a percentage: 0.097 -> '9.7%'."""
    return f"{100 * v:.{digits}f}%" if is_num(v) else DASH


def rate(v: Any, passed: Any = None, total: Any = None) -> str:
    """A pass rate with its counts when known: '9.7% (29/299)'."""
    if not is_num(v):
        return DASH
    return f"{pct(v)} ({passed}/{total})" if is_num(passed) and is_num(total) else pct(v)


def pp(v: Any, digits: int = 1) -> str:
    """A signed difference in percentage points: 3.33 -> '+3.3 pp'."""
    return f"{v:+.{digits}f} pp" if is_num(v) else DASH


def mib(size_bytes: Any) -> str:
    """Bytes as MiB with the compress stage's 3 decimals: 1733312 -> '1.653 MiB'."""
    return f"{size_bytes / 2**20:.3f} MiB" if is_num(size_bytes) else DASH


def num(v: Any, digits: int = 4) -> str:
    """Any scalar: ints with thousands separators, floats to `digits` significant digits."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if is_num(v):
        return f"{v:.{digits}g}"
    if v is None:
        return DASH
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) or DASH
    return str(v)


def seconds(v: Any) -> str:
    if not is_num(v):
        return DASH
    return f"{v:.1f} s" if v < 120 else f"{v:.0f} s ({v / 60:.1f} min)"


def clip(text: str, limit: int = 160) -> str:
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"
