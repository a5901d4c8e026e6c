"""Compression waterfall: size, packed size, perplexity, pass rate and speed of every variant per
branch (compress/variants.json), the chosen one, and the stage's own PNGs."""

from __future__ import annotations

from cogumi_ray.reports import plots
from cogumi_ray.reports.doc import Figure, Note, Section, Table, Text
from cogumi_ray.reports.fmt import DASH, is_num, mib, num, pct, rate
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, expect, gate

STAGE_PNGS = (("size_vs_quality.png", "Compress stage: size vs quality"),
              ("reliability.png", "Compress stage: confidence calibration (reliability)"))


def _variants(run: RunData, inline: Inline) -> list[dict] | None:
    data = inline.json("compress", None, "variants.json", required=False)
    if data is None:  # older runs keep the table only inside report.json
        rep = inline.json("compress", "report", "report.json", required=False)
        data = rep.get("variants") if isinstance(rep, dict) else None
    rows = expect(inline, "compress", "variants", data, list)
    return [v for v in rows if isinstance(v, dict)] if rows is not None else None


def section(run: RunData) -> Section:
    sec = Section("Compression", "compress")
    if not gate(run, sec, "compress"):
        return sec
    inline = Inline(run, sec)
    m = run.metrics("compress")
    chosen = m.get("chosen")
    variants = _variants(run, inline)
    if is_num(m.get("sparsity_overall")):
        sec.add(Text(f"Pruning ({m.get('prune_method', '?')}): {pct(m['sparsity_overall'])} of weights "
                     f"zero overall (attention {pct(m.get('sparsity_attention'))}, MLP "
                     f"{pct(m.get('sparsity_mlp'))}, embeddings {pct(m.get('sparsity_embeddings'))}); "
                     f"chosen for serving: {chosen or DASH}."))
    if not variants:
        if variants is None:
            sec.add(Note("compress: no variants.json (and no variants in report.json)"))
        return sec
    base = next((v["size_bytes"] for v in variants if is_num(v.get("size_bytes"))), None)
    rows = []
    for v in variants:
        x = v.get("extra") if isinstance(v.get("extra"), dict) else {}
        size = v.get("size_bytes")
        rows.append([str(v.get("name")) + (" ★" if v.get("name") == chosen else ""), str(v.get("branch")),
                     str(v.get("kind")), mib(size), mib(v.get("packed_bytes")),
                     f"{size / base:.2f}×" if is_num(size) and is_num(base) and base else DASH,
                     num(v.get("perplexity"), 5), rate(v.get("pass_rate"), x.get("passed"), x.get("total")),
                     num(v.get("gen_tok_s"))])
    sec.add(Table(["variant", "branch", "kind", "size", "packed", "size vs first", "perplexity",
                   "pass rate", "gen tok/s"], rows,
                  "Every variant, in the order the stage made them (★ = chosen)", numeric=(3, 4, 5, 6, 7, 8)))
    sized = [v for v in variants if is_num(v.get("size_bytes"))]
    if sized:
        sec.add(Figure("compress_waterfall.png", plots.size_and_quality(
            [str(v.get("name")) for v in sized], [v["size_bytes"] / 2**20 for v in sized],
            [v["packed_bytes"] / 2**20 if is_num(v.get("packed_bytes")) else None for v in sized],
            [v.get("pass_rate") if is_num(v.get("pass_rate")) else None for v in sized],
            [str(v.get("branch")) for v in sized], chosen), "Compression waterfall", wide=True))
    for name, caption in STAGE_PNGS:
        path = run.path("compress", None, name)
        if path and (png := inline.bytes_at(path, "compress")):
            sec.add(Figure(f"compress_{name}", png, caption))
    cal = {k: v for k, v in m.items() if k.startswith("calibration_")}
    if cal:
        sec.add(Table(["calibration", "value"], [[k.removeprefix("calibration_"), num(v)]
                                                 for k, v in cal.items()], numeric=(1,)))
    return sec
