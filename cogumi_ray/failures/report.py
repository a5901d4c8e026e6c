"""The failure report: per cluster (size, label, domains, examples) and per domain (failures,
clusters), as JSON for tools and Markdown for people."""

from __future__ import annotations

from collections import Counter
from typing import Any

from cogumi_ray.failures.kmeans import Clustering


def _short(text: Any, limit: int = 160) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _cell(text: Any) -> str:
    """Markdown table cell: a '|' inside would end the cell."""
    return str(text).replace("|", "\\|")


def build_report(
    rows: list[dict[str, Any]], clustering: Clustering, terms: dict[int, list[str]], examples: int
) -> dict[str, Any]:
    """`rows` carry id, domain, instruction, rationale and cluster."""
    clusters = []
    for c in range(clustering.k):
        members = [r for r in rows if r["cluster"] == c]
        clusters.append({
            "cluster": c,
            "size": len(members),
            "label": ", ".join(terms.get(c, [])),
            "terms": terms.get(c, []),
            "domains": dict(Counter(str(r.get("domain")) for r in members).most_common()),
            "examples": [{"id": r["id"], "domain": r.get("domain"),
                          "instruction": _short(r.get("instruction")),
                          "rationale": _short(r.get("rationale"))} for r in members[:examples]],
        })
    domains: dict[str, Any] = {}
    for d, n in Counter(str(r.get("domain")) for r in rows).most_common():
        per = Counter(r["cluster"] for r in rows if str(r.get("domain")) == d)
        domains[d] = {"failures": n, "clusters": {str(c): m for c, m in sorted(per.items())}}
    return {
        "failures": len(rows),
        "k": clustering.k,
        "k_selection": clustering.selection,
        "silhouette": {str(k): s for k, s in clustering.silhouette.items()},
        "clusters": clusters,
        "domains": domains,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Failure analysis", ""]
    if not report["failures"]:
        return "\n".join([*lines, "No failures to analyse (the judge found none).", ""])
    sil = report["silhouette"].get(str(report["k"]))
    lines.append(f"{report['failures']} failures in {report['k']} clusters "
                 f"(k by {report['k_selection']}" + (f", silhouette {sil:.3f})" if sil is not None
                                                     else ")"))
    lines += ["", "## Clusters", "", "| cluster | size | label | domains |", "|---|---|---|---|"]
    for c in report["clusters"]:
        doms = ", ".join(f"{d} {n}" for d, n in c["domains"].items())
        lines.append(f"| {c['cluster']} | {c['size']} | {_cell(c['label'] or '-')} | {_cell(doms)} |")
    lines += ["", "## Domains", "", "| domain | failures | by cluster |", "|---|---|---|"]
    for d, info in report["domains"].items():
        per = ", ".join(f"#{c}: {n}" for c, n in info["clusters"].items())
        lines.append(f"| {_cell(d)} | {info['failures']} | {per} |")
    lines += ["", "## Examples"]
    for c in report["clusters"]:
        lines += ["", f"### Cluster {c['cluster']}: {c['label'] or '(no distinctive terms)'}", ""]
        for ex in c["examples"]:
            lines.append(f"- `{ex['id']}` ({ex['domain']}): {ex['instruction']}"
                         + (f" — judge: {ex['rationale']}" if ex["rationale"] else ""))
    return "\n".join(lines) + "\n"
