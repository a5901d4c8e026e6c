"""Writing the suite as raw JSONL in several common instruction formats.

Formats (one file each, `<format>.jsonl`; rows are shuffled and spread round-robin):
- alpaca:          {"id", "instruction", "input": "", "output", ...}
- sharegpt:        {"id", "conversations": [{"from": "human", "value"},
                                           {"from": "gpt", "value"}], ...}
- prompt_response: {"id", "prompt", "response", ...}
- qa:              {"id", "question", "answer", ...}
Every well-formed row also carries top-level "domain", "difficulty", "source" and "metadata" (a JSON
object: the verifier's data, plus "planted" on planted rows), so normalising to `Example` keeps
what the verifiers need. Malformed lines are mixed in at random positions; the returned stats list
each one by file, 1-based line number and kind.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from cogumi_ray import storage
from cogumi_ray.data.config import SuiteConfig
from cogumi_ray.data.schema import Example
from cogumi_ray.data.suite import mess
from cogumi_ray.data.suite.generator import generate_suite

FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "prompt_response", "qa")


def to_raw(ex: Example, fmt: str) -> dict[str, Any]:
    if fmt == "alpaca":
        content: dict[str, Any] = {"instruction": ex.instruction, "input": "",
                                   "output": ex.response}
    elif fmt == "sharegpt":
        content = {"conversations": [{"from": "human", "value": ex.instruction},
                                     {"from": "gpt", "value": ex.response}]}
    elif fmt == "prompt_response":
        content = {"prompt": ex.instruction, "response": ex.response}
    elif fmt == "qa":
        content = {"question": ex.instruction, "answer": ex.response}
    else:
        raise ValueError(f"unknown raw format {fmt!r}; formats: {list(FORMATS)}")
    return {"id": ex.id, **content, "domain": ex.domain, "difficulty": ex.difficulty,
            "source": ex.source, "metadata": ex.metadata}


def plant_mess(cfg: SuiteConfig, clean: list[Example]) -> tuple[list[Example], Counter[str]]:
    """Clean rows (some with PII planted) plus planted rows, in generation order."""
    rng = random.Random(f"cogumi-suite-mess:{cfg.seed}")
    n = len(clean)
    n_exact, n_near = round(n * cfg.exact_dup_rate), round(n * cfg.near_dup_rate)
    n_noise = round(n * cfg.noise_rate)
    order = list(range(n))
    rng.shuffle(order)  # disjoint picks: PII targets, exact-dup sources, near-dup sources
    pii_idx = order[:n_noise]
    exact_idx = order[n_noise: n_noise + n_exact]
    near_idx = order[n_noise + n_exact: n_noise + n_exact + n_near]
    if len(near_idx) < n_near:
        raise ValueError(f"rates too high for {n} clean rows: exact {n_exact} + near {n_near} + "
                         f"pii {n_noise} rows must come from distinct clean rows")
    counts: Counter[str] = Counter()
    rows = list(clean)
    for j, i in enumerate(pii_idx):
        kind = mess.PII_KINDS[j % len(mess.PII_KINDS)]
        rows[i] = mess.with_pii(rng, clean[i], kind)
        counts[f"pii:{kind}"] += 1
    for i in exact_idx:
        src = clean[i]
        rows.append(Example(**{**src.__dict__, "id": f"{src.id}-dup",
                               "metadata": {**src.metadata, "planted": f"exact_dup_of:{src.id}"}}))
        counts["exact_dup"] += 1
    for i in near_idx:
        rows.append(mess.near_duplicate(rng, clean[i], f"{clean[i].id}-near"))
        counts["near_dup"] += 1
    rows += mess.too_short_rows(rng, n_noise)
    rows += [mess.too_long(rng, i) for i in range(n_noise)]
    rows += [mess.non_english(rng, i) for i in range(n_noise)]
    counts.update({"too_short": n_noise, "too_long": n_noise, "non_english": n_noise})
    return rows, counts


def write_raw_suite(cfg: SuiteConfig, out_dir: str) -> dict[str, Any]:
    """Generate, plant mess, write `<format>.jsonl` files into `out_dir`; return the stats."""
    clean = generate_suite(cfg)
    rows, counts = plant_mess(cfg, clean)
    rng = random.Random(f"cogumi-suite-raw:{cfg.seed}")
    rng.shuffle(rows)
    # Per file: (line text, malformed kind or None), so line numbers are read off at the end.
    files: dict[str, list[tuple[str, str | None]]] = {f: [] for f in cfg.formats}
    raw_by_file: dict[str, list[dict[str, Any]]] = {f: [] for f in cfg.formats}
    for k, ex in enumerate(rows):
        fmt = cfg.formats[k % len(cfg.formats)]
        raw = to_raw(ex, fmt)
        raw_by_file[fmt].append(raw)
        files[fmt].append((json.dumps(raw, ensure_ascii=False), None))
    for j in range(round(len(clean) * cfg.noise_rate)):
        fmt = cfg.formats[j % len(cfg.formats)]
        kind = mess.MALFORMED_KINDS[j % len(mess.MALFORMED_KINDS)]
        template = rng.choice(raw_by_file[fmt]) if raw_by_file[fmt] else to_raw(clean[0], fmt)
        pos = rng.randint(0, len(files[fmt]))
        files[fmt].insert(pos, (mess.malformed_line(rng, kind, template), kind))
    malformed = [{"file": f"{fmt}.jsonl", "line": n, "kind": kind}
                 for fmt, lines in files.items()
                 for n, (_, kind) in enumerate(lines, start=1) if kind]
    for fmt, lines in files.items():
        text = "\n".join(line for line, _ in lines) + "\n"
        storage.atomic_write_text(storage.join(out_dir, f"{fmt}.jsonl"), text)
    counts.update(f"malformed:{m['kind']}" for m in malformed)
    planted: Counter[str] = Counter()
    for key, v in counts.items():
        planted[key.split(":")[0]] += v
    return {
        "clean_rows": len(clean),
        "rows_written": sum(len(v) for v in files.values()),
        "malformed_lines": len(malformed),
        "planted_rows": sum(v for k, v in planted.items() if k not in ("pii", "malformed")),
        "pii_rows": planted["pii"],
        "clean_per_domain": dict(Counter(e.domain for e in clean)),
        "planted": dict(sorted(planted.items())),
        "planted_detail": dict(sorted(counts.items())),
        "files": {f"{fmt}.jsonl": len(lines) for fmt, lines in files.items()},
        "malformed": malformed,
    }

