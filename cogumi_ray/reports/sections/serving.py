"""Serving: the example queries `cogumi demo` sent to the served run (serve/demo_answers.json,
written by `cogumi_ray.serve.demo_queries`), and the latency-like metrics of any serving/benchmark
stage in the manifest. Nothing at all when neither exists (the pipeline has no serving stage;
`cogumi demo` asks its queries after it, then writes the report again)."""

from __future__ import annotations

import statistics
from typing import Any

from cogumi_ray.reports.doc import Note, Section, Stats, Table, Text
from cogumi_ray.reports.fmt import DASH, clip, is_num, num
from cogumi_ray.reports.load import RunData
from cogumi_ray.reports.sections.common import Inline, expect, gate

STAGE_PREFIXES = ("serve", "bench", "validate")
LATENCY_HINTS = ("latency", "ttft", "p50", "p90", "p95", "p99", "_ms", "tok_s", "tokens_per_s", "rps")
# demo_queries.answers_path(run_dir), kept literal so the report does not import the serving package.
DEMO_DIR, DEMO_FILE = "serve", "demo_answers.json"


def _ms(seconds: Any) -> str:
    return f"{1000 * seconds:,.0f} ms" if is_num(seconds) else DASH


def _demo(run: RunData, sec: Section) -> None:
    inline = Inline(run, sec)
    raw = expect(inline, DEMO_DIR, DEMO_FILE, inline.json(DEMO_DIR, None, DEMO_FILE, required=False), list)
    answers = [a for a in raw or [] if isinstance(a, dict)]
    if not answers:
        return
    secs = [float(a["seconds"]) for a in answers if is_num(a.get("seconds"))]
    firsts = [float(a["first_token_seconds"]) for a in answers if is_num(a.get("first_token_seconds"))]
    verdicts = [a.get("passed") for a in answers if isinstance(a.get("passed"), bool)]
    tiles = [("demo queries", num(len(answers)), "routed by model 'cogumi', openai SDK, streamed")]
    if secs:
        tiles.append(("median latency", _ms(statistics.median(secs)), f"slowest {_ms(max(secs))}"))
    if firsts:
        tiles.append(("median first token", _ms(statistics.median(firsts)),
                      f"slowest {_ms(max(firsts))}"))
    if verdicts:
        tiles.append(("verifier passed", f"{sum(verdicts)}/{len(verdicts)}", "suite verifier"))
    sec.add(Stats(tiles))
    rows = [[str(a.get("label", DASH)), clip(" ".join(str(a.get("question", "")).split()), 70),
             str(a.get("option", DASH)), num(a.get("confidence"), 3),
             {True: "pass", False: "fail"}.get(a.get("passed"), DASH),
             _ms(a.get("first_token_seconds")), _ms(a.get("seconds"))] for a in answers]
    sec.add(Table(["query", "question", "answered by", "confidence", "verdict", "first token",
                   "latency"], rows,
                  "The demo's example queries against the served run (latency: request to last "
                  "streamed chunk, seen by the client on the same machine)", numeric=(3, 5, 6)))
    sec.add(Text("One request at a time on a warm server: these are single-query latencies of the "
                 "demo's own questions, not a throughput benchmark."))


def section(run: RunData) -> Section | None:
    stages = [s for s in run.manifest.stages if s.startswith(STAGE_PREFIXES)]
    demo = run.path(DEMO_DIR, None, DEMO_FILE)
    if not stages and demo is None:
        return None
    sec = Section("Serving", "serving")
    if demo is not None:
        _demo(run, sec)
    for stage in stages:
        if not gate(run, sec, stage):
            continue
        m = run.metrics(stage)
        rows = [[k, num(v)] for k, v in m.items()
                if any(h in k.lower() for h in LATENCY_HINTS) and isinstance(v, int | float)]
        if rows:
            sec.add(Table(["metric", "value"], rows, f"{stage}: latency and throughput", numeric=(1,)))
    if not sec.blocks:
        sec.add(Note(f"serving: {DEMO_DIR}/{DEMO_FILE} holds no answers"))
    return sec
