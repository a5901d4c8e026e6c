"""Adapter uplift through llama.cpp: does what a LoRA modifier buys in HF survive the GGUF route
(quantized base GGUF + the adapter's LoRA GGUF)?

    .venv/bin/python benchmarks/adapter_uplift.py --run runs/demo
    .venv/bin/python benchmarks/adapter_uplift.py --run runs/demo --variants f16 Q4_K_M --tolerance-pp 2
    .venv/bin/python benchmarks/adapter_uplift.py --run runs/demo --fresh 300   # ~420 rows a domain

For each adapter domain of the run's modifiers stage, on that domain's rows of `--splits` (held-out
and validation by default; neither is trained on):
- HF: the base's and base + adapter's pass rates, read from the stage's `scores.parquet` (the
  per-row verdicts the manifest's `<domain>_uplift_pp` comes from, on its test rows; recomputed
  with the eval engine when the run has no such file);
- llama.cpp, per GGUF variant of the compress stage (`<branch>-<variant>.gguf`): the base GGUF
  alone and with `modifiers/adapters/<domain>.gguf` on top (`llama_cpp.lora`), each scored with
  the eval section's decoding and the suite's verifiers (`eval.stage.score_model`, through the
  run's score cache, so a second run reads its verdicts back);
then the uplift in each (pp) and its difference from HF's. A variant whose uplift is more than
--tolerance-pp away from HF's is flagged. Per-row agreement with HF's verdicts is reported too:
with 120 rows a domain (60 held-out + 60 validation on the embedded default), one row moves a pass
rate by 0.83 pp, so `--fresh N` adds up to N new rows a domain from the suite generator (see
`fresh_rows`) to resolve a 2 pp tolerance.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("adapter_uplift")
BASE = "base"


def run_paths(run: Path, splits: list[str]) -> dict[str, Any]:
    """The files the benchmark reads, from the run manifest."""
    manifest = json.loads((run / "manifest.json").read_text())
    stages = manifest.get("stages", {})

    def outputs(stage: str) -> dict[str, str]:
        return stages.get(stage, {}).get("outputs", {})

    mods = stages.get("modifiers")
    if not mods or mods.get("status") != "done":
        sys.exit(f"{run}: the modifiers stage has not finished; run `cogumi modifiers train` first")
    adapters = {d: outputs("modifiers").get(f"{d}_adapter_gguf")
                for d in mods.get("metrics", {}).get("domains", [])}
    missing = [d for d, p in adapters.items() if not p]
    if missing:
        sys.exit(f"{run}: no LoRA GGUF for modifier(s) {missing} (the base cannot have one?)")
    ggufs = outputs("compress").get("ggufs")
    if not ggufs:
        sys.exit(f"{run}: no compress stage GGUFs; run `cogumi compress` first")
    return {
        "model": outputs("distill").get("model") or outputs("train_base").get("model"),
        "splits": {sp: outputs("curate").get(sp) for sp in splits},
        "train": outputs("curate").get("train"),
        "heldout_max_jaccard": stages.get("curate", {}).get("metrics", {}).get(
            "test_max_jaccard_to_train"),
        "scores": outputs("modifiers").get("scores"),
        "adapters": adapters,
        "adapter_dirs": {d: os.path.join(outputs("modifiers")["adapters"], d) for d in adapters},
        "ggufs": ggufs,
        "manifest_uplift_pp": {d: mods["metrics"].get(f"{d}_uplift_pp") for d in adapters},
    }


def hf_verdicts(scores_path: str | None, domain: str,
                splits: list[str]) -> dict[str, dict[str, bool]] | None:
    """option (base | domain) -> row id -> passed, on the `splits` rows of `domain`, or None."""
    if not scores_path or not os.path.exists(scores_path):
        return None
    import pyarrow.parquet as pq

    rows = pq.read_table(scores_path).to_pylist()
    out: dict[str, dict[str, bool]] = {BASE: {}, domain: {}}
    for r in rows:
        if r["split"] in splits and r["domain"] == domain and r["option"] in out:
            out[r["option"]][r["id"]] = bool(r["passed"])
    return out if out[BASE] and out[domain] else None


def own_verdicts(score: Any, domain: str) -> dict[str, bool]:
    return {it.id: bool(it.passed) for it in score.items if it.group.get("domain") == domain}


def rate(verdicts: dict[str, bool]) -> float:
    return sum(verdicts.values()) / len(verdicts) if verdicts else 0.0


def agreement(a: dict[str, bool], b: dict[str, bool]) -> float | None:
    shared = a.keys() & b.keys()
    return round(sum(a[i] == b[i] for i in shared) / len(shared), 4) if shared else None


def mean_ci(per_row: list[float], draws: int = 2000) -> tuple[float, list[float]]:
    """Mean in pp and its 95% bootstrap interval (rows resampled): what row luck alone moves."""
    import numpy as np

    x = np.array(per_row, dtype=float)
    if not len(x):
        return 0.0, [0.0, 0.0]
    means = x[np.random.default_rng(0).integers(0, len(x), (draws, len(x)))].mean(axis=1)
    lo, hi = np.percentile(100 * means, [2.5, 97.5])
    return round(100 * float(x.mean()), 2), [round(float(lo), 2), round(float(hi), 2)]


def uplift_rows(v: dict[str, dict[str, bool]], domain: str, ids: list[str]) -> list[int]:
    return [int(v[domain][i]) - int(v[BASE][i]) for i in ids]


def paired_diff(lc: dict[str, dict[str, bool]], hf: dict[str, dict[str, bool]],
                domain: str) -> tuple[float, list[float]]:
    """llama.cpp's uplift minus HF's in pp over the rows both scored, with its paired interval."""
    ids = sorted(lc[BASE].keys() & lc[domain].keys() & hf[BASE].keys() & hf[domain].keys())
    lc_rows, hf_rows = uplift_rows(lc, domain, ids), uplift_rows(hf, domain, ids)
    return mean_ci([a - b for a, b in zip(lc_rows, hf_rows, strict=True)])


def llama_engine(gguf: str, lora: str | None, threads: int | None) -> Any:
    from cogumi_ray.generate.config import EngineConfig, LlamaCppEngineConfig

    # the compress stage's GGUF engine settings, plus the adapter
    return EngineConfig(kind="llama_cpp", model=gguf,
                        llama_cpp=LlamaCppEngineConfig(n_threads=threads, lora=lora))


def fresh_rows(split_rows: list[Any], train_path: str | None, domains: list[str], per_domain: int,
               seed: int, below: float) -> tuple[list[Any], dict[str, Any]]:
    """`per_domain` rows of each domain from the suite generator under another seed, spread evenly
    over difficulties: new parameter combinations of the trained skills, as the held-out split's
    rows are. None has an instruction that a curated split holds, or reaches a char-3-gram Jaccard
    of `below` (curation's near-duplicate threshold) with a training row, compared as the curate
    stage compares the held-out split (instruction + response). A difficulty with too few such
    rows leaves its domain short (the counts are in the result)."""
    import dataclasses

    from cogumi_ray.data.config import SuiteConfig
    from cogumi_ray.data.novelty import closest_train_rows, heldout_novelty, mild
    from cogumi_ray.data.suite import generate_suite
    from cogumi_ray.eval.stage import read_examples

    train = read_examples(train_path) if train_path else []
    seen = {mild(e.instruction) for e in (*train, *split_rows)}
    pool = [e for e in generate_suite(SuiteConfig(examples_per_domain=max(3 * per_domain, 1000),
                                                  domains=domains, seed=seed))
            if mild(e.instruction) not in seen]

    def text(e: Any) -> str:  # what the curate stage compares (instruction + response)
        return f"{e.instruction}\n{e.response}"

    if train:
        near = closest_train_rows([text(e) for e in train], [text(e) for e in pool])
        pool = [e for e, (j, _) in zip(pool, near, strict=True) if j < below]
    out: list[Any] = []
    for d in domains:
        by_level: dict[str, list[Any]] = {}
        for e in pool:
            if e.domain == d:
                by_level.setdefault(e.difficulty, []).append(e)
        levels = sorted(by_level)
        for i, level in enumerate(levels):  # an even share per difficulty, the rest to the last
            want = per_domain // len(levels) + (per_domain % len(levels) if i == len(levels) - 1 else 0)
            out.extend(dataclasses.replace(e, id=f"fresh{seed}-{e.id}") for e in by_level[level][:want])
    nov = heldout_novelty([(e.id, text(e)) for e in train], [(e.id, text(e)) for e in out])
    return out, {"seed": seed, "rows": len(out), "max_jaccard_to_train": nov.max_jaccard,
                 "mean_max_jaccard_to_train": nov.mean_max_jaccard}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from cogumi_ray.config import load_config
    from cogumi_ray.eval.score_cache import cache_dir
    from cogumi_ray.eval.stage import read_examples, score_model

    cfg = load_config(args.config)
    run = Path(args.run).resolve()
    paths = run_paths(run, args.splits)
    cache = cache_dir(str(run)) if not args.no_cache else None
    missing = [sp for sp, p in paths["splits"].items() if not p]
    if missing:
        sys.exit(f"{run}: the curate stage has no {missing} split")
    examples = [e for p in paths["splits"].values() for e in read_examples(p)]
    t_start = time.perf_counter()
    out: dict[str, Any] = {
        "run": str(args.run), "splits": args.splits, "branch": args.branch, "variants": args.variants,
        "tolerance_pp": args.tolerance_pp, "decoding": cfg.eval.params.model_dump(mode="json"),
        "domains": {}, "flagged": [],
    }
    if args.fresh:
        extra, out["fresh"] = fresh_rows(examples, paths["train"], list(paths["adapters"]), args.fresh,
                                         args.fresh_seed, cfg.curate.dedup.threshold)
        out["fresh"]["heldout_max_jaccard_to_train"] = paths["heldout_max_jaccard"]
        examples += extra
    for domain, adapter in paths["adapters"].items():
        rows = [e for e in examples if e.domain == domain]
        hf = hf_verdicts(paths["scores"], domain, args.splits)
        if hf is not None and args.fresh:  # the stage scored the splits only: the fresh rows too
            hf = None
        if hf is None:  # recompute: the eval engine on the base and on base + adapter (merged)
            from cogumi_ray.modifiers.scoring import score_adapter

            log.info("%s: no HF verdicts in the run; scoring base and base + adapter in HF", domain)
            base_s = score_model(cfg, paths["model"], rows, cache=cache)
            ad_s = score_adapter(cfg, paths["model"], paths["adapter_dirs"][domain],
                                 {"test": rows}, cache)["test"]
            hf = {BASE: own_verdicts(base_s, domain), domain: own_verdicts(ad_s, domain)}
            hf_source = "recomputed"
        else:
            hf_source = "scores.parquet"
        hf_up, hf_ci = mean_ci(uplift_rows(hf, domain, sorted(hf[BASE].keys() & hf[domain].keys())))
        entry: dict[str, Any] = {
            "rows": len(hf[BASE]),
            "hf": {"base": round(rate(hf[BASE]), 4), "adapter": round(rate(hf[domain]), 4),
                   "uplift_pp": hf_up, "uplift_pp_ci95": hf_ci, "source": hf_source,
                   "manifest_uplift_pp": paths["manifest_uplift_pp"].get(domain)},
            "llama_cpp": {},
        }
        for variant in args.variants:
            gguf = os.path.join(paths["ggufs"], f"{args.branch}-{variant}.gguf")
            if not os.path.isfile(gguf):
                sys.exit(f"{gguf} does not exist; the compress stage wrote "
                         f"{sorted(os.listdir(paths['ggufs']))}")
            t0 = time.perf_counter()
            lc = {}
            for option, lora in ((BASE, None), (domain, adapter)):
                s = score_model(cfg, gguf, rows, engine=llama_engine(gguf, lora, args.threads),
                                cache=cache)
                lc[option] = own_verdicts(s, domain)
            up = round(100 * (rate(lc[domain]) - rate(lc[BASE])), 2)
            diff, ci = paired_diff(lc, hf, domain)
            within = abs(diff) <= args.tolerance_pp
            entry["llama_cpp"][variant] = {
                "base": round(rate(lc[BASE]), 4), "adapter": round(rate(lc[domain]), 4),
                "uplift_pp": up, "diff_pp": diff, "diff_pp_ci95": ci, "within_tolerance": within,
                "rows": len(lc[BASE]),
                "row_agreement_with_hf": {"base": agreement(lc[BASE], hf[BASE]),
                                          "adapter": agreement(lc[domain], hf[domain])},
                "seconds": round(time.perf_counter() - t0, 1),
            }
            log.info("%s %s: uplift %+.2f pp (HF %+.2f pp, diff %+.2f pp)%s", domain, variant, up,
                     hf_up, diff, "" if within else "  FLAGGED")
            if not within:
                out["flagged"].append({"domain": domain, "variant": variant, "diff_pp": diff})
        out["domains"][domain] = entry
    out["holds"] = not out["flagged"]
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def table(res: dict[str, Any]) -> str:
    """A Markdown table: pass rates base -> adapter and the uplift, HF then each variant."""
    variants = res["variants"]
    head = "| domain | rows | HF | " + " | ".join(f"llama.cpp {v}" for v in variants) + " |"
    lines = [head, "|---" * (3 + len(variants)) + "|"]
    for d, e in res["domains"].items():
        def cell(x: dict[str, Any], diff: bool) -> str:
            s = f"{100 * x['base']:.1f} -> {100 * x['adapter']:.1f} ({x['uplift_pp']:+.2f} pp"
            return s + (f", diff {x['diff_pp']:+.2f}{'' if x['within_tolerance'] else ' !'})"
                        if diff else ")")
        lines.append(f"| {d} | {e['rows']} | {cell(e['hf'], False)} | "
                     + " | ".join(cell(e["llama_cpp"][v], True) for v in variants) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="run directory (e.g. runs/demo)")
    ap.add_argument("--config", default=None,
                    help="the run's pipeline config YAML (default: the embedded one `cogumi demo` uses)")
    ap.add_argument("--variants", nargs="+", default=["f16", "Q5_K_M", "Q4_K_M"],
                    help="GGUF variants of the compress stage")
    ap.add_argument("--splits", nargs="+", default=["test", "val"],
                    help="curated splits whose rows are scored (both held-out and validation rows: "
                    "60 a domain each on the embedded default, so one row is 0.8 pp, not 1.7)")
    ap.add_argument("--fresh", type=int, default=0, metavar="N",
                    help="also score up to N fresh rows a domain: the suite generator under "
                    "--fresh-seed, minus every instruction of the curated splits and every row at "
                    "curation's near-duplicate Jaccard with a training row (the held-out split "
                    "caps a domain at 60 rows; more rows narrow the intervals). HF is then scored "
                    "here rather than read from the stage's scores.parquet")
    ap.add_argument("--fresh-seed", type=int, default=1)
    ap.add_argument("--branch", default="dense", help="compress branch whose GGUFs are used "
                    "(the adapters were trained on the dense base)")
    ap.add_argument("--tolerance-pp", type=float, default=2.0,
                    help="largest |llama.cpp uplift - HF uplift| that is not flagged")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (None = its choice)")
    ap.add_argument("--no-cache", action="store_true", help="score again, ignoring the score cache")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results-adapter-uplift.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    res = measure(args)
    print(json.dumps(res, indent=1))
    print(table(res), file=sys.stderr)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
