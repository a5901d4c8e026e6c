"""Sandbox cost: HumanEval's 164 canonical solutions, each in a jail of its own, strict vs weak.

    .venv/bin/python benchmarks/sandbox.py --repeats 3 --workers 2

Both modes run the same 164 programs through `humaneval.execute` (one sandbox per program,
`--workers` at a time), interleaved round by round; reported: seconds for 164 (median, min, max),
milliseconds per answer, and that every canonical solution passed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cogumi_ray.eval.config import EvalConfig  # noqa: E402
from cogumi_ray.eval.harness import benchmark_file  # noqa: E402
from cogumi_ray.eval.humaneval import execute, load_problems  # noqa: E402
from cogumi_ray.sandbox import ISOLATION_ENV  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    cfg = EvalConfig()
    problems = load_problems(benchmark_file(cfg, cfg.humaneval_file))
    solutions = [p.canonical_solution for p in problems]
    seconds: dict[str, list[float]] = {"strict": [], "weak": []}
    passed: dict[str, int] = {}
    for r in range(args.repeats):
        for mode in (("strict", "weak") if r % 2 == 0 else ("weak", "strict")):
            os.environ[ISOLATION_ENV] = mode
            t0 = time.perf_counter()
            results = execute(problems, solutions, workers=args.workers)
            seconds[mode].append(time.perf_counter() - t0)
            passed[mode] = sum(x.passed for x in results)
            print(f"round {r + 1} {mode}: {seconds[mode][-1]:.2f} s, {passed[mode]}/164 passed",
                  flush=True)
    out = {
        mode: {"seconds_164_median": statistics.median(s), "seconds_min": min(s),
               "seconds_max": max(s), "ms_per_answer": statistics.median(s) / len(problems)
               * args.workers * 1000, "passed": passed[mode]}
        for mode, s in seconds.items()
    }
    out["strict_over_weak"] = out["strict"]["seconds_164_median"] / out["weak"]["seconds_164_median"]
    out["workers"] = args.workers
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
