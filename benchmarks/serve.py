"""Serving benchmark: the cogumi Ray Serve graph against the same GGUF called in-process, and
against llama.cpp's own OpenAI server (`python -m llama_cpp.server`), in one interleaved run.

    .venv/bin/python benchmarks/serve.py --run runs/demo --out bench-serve.json
    .venv/bin/python benchmarks/serve.py --gguf model.gguf --adapter code=code-lora.gguf

Engines (same GGUF, greedy, fixed prompts and max_tokens):
- `direct`: the model server's own backend (`LlamaCppGenerator`: llama-cpp-python's `Llama` under
  the same prompt ids and decode loop) called in this process; the floor.
- `generator_handle` / `router_handle`: the Serve deployments called through DeploymentHandles
  from this process (one actor hop; two, with the base's name so the Router does not route),
  which splits the graph's cost by hop.
- `serve`: the whole graph over HTTP (proxy -> Ingress -> Router -> Generator) with the `openai` SDK.
  A request naming its option (`forced`) skips the Router (proxy -> Ingress -> Generator; a Router
  that keeps sessions notes its turn meanwhile); with `--via-router`, a second app on the same proxy
  (`/via-router`, `serve.direct_forced=False`) times it through the Router in the same pass (its
  idle replicas share the two cores: the other figures of such a run are not the headline).
- `llama_server`: llama-cpp-python's OpenAI server on the same file, with the `openai` SDK.

Measured: latency p50/p99 and the Serve graph's added latency over `direct` (per-pair
differences); time to first token (streaming); completion tokens/s and requests/s at each
`--concurrency`; modifier swap latency (alternating base and `cogumi:<modifier>` against one option
only); routing overhead (the Router hop: router_handle - generator_handle; and routed `cogumi` vs
forced base-name requests over HTTP). The `serve` engine is `model="cogumi"`: routed. Nothing here
asserts a timing; the targets (<= 15 ms p50 added, <= 50 ms swap) are reported next to the
numbers, the latency one for a forced and for a routed request.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = [
    "What is 48 + 17? Answer with the number only.",
    "Sort the list [9, 0, 3, 3] in ascending order.",
    "Write a Python function add_7(x) that returns x + 7.",
    "What is 5 + 91? Answer with the number only.",
    "Write a Python function that reverses a string.",
    "If Anna is older than Ben and Ben is older than Carl, who is the youngest?",
    "Write a shell command that counts the lines of every .py file in a folder.",
    "Name the capital of France in one word.",
]
TARGET_ADDED_P50_MS = 15.0
TARGET_SWAP_MS = 50.0

Call = Callable[[str, str], dict[str, Any]]  # (prompt, model) -> {"s", "completion_tokens", ...}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of a few hundred samples is close to their maximum)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = [1000 * s for s in seconds]
    return {"n": len(ms), "p50_ms": round(_pct(ms, 50), 3), "p99_ms": round(_pct(ms, 99), 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


# --- engines ----------------------------------------------------------------------------------


def direct_engine(cfg: Any, max_tokens: int) -> tuple[Any, Call, Callable[[str, str], float]]:
    from cogumi_ray.generate.config import GenParams
    from cogumi_ray.serve.backends.llama_cpp import LlamaCppGenerator

    gen = LlamaCppGenerator(cfg)
    params = GenParams(max_new_tokens=max_tokens, temperature=0.0, seed=0)

    def adapter(model: str) -> str | None:
        return model.removeprefix("cogumi:") if model.startswith("cogumi:") else None

    def call(prompt: str, model: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = gen.generate(_messages(prompt), params, adapter(model))
        return {"s": time.perf_counter() - t0, "completion_tokens": r.completion_tokens,
                "prompt_tokens": r.prompt_tokens, "text": r.text}

    def ttft(prompt: str, model: str) -> float:
        t0 = time.perf_counter()
        first = None
        for item in gen.stream(_messages(prompt), params, adapter(model)):
            if first is None and isinstance(item, str) and item:
                first = time.perf_counter() - t0
        return first if first is not None else time.perf_counter() - t0

    return gen, call, ttft


class _Loop:
    """An event loop in a thread: handles are used from inside a loop, as replicas use them
    (with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 a handle refuses to work outside one)."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


def handle_engine(loop: _Loop, app: str, deployment: str, max_tokens: int) -> Call:
    from ray import serve

    from cogumi_ray.generate.config import GenParams
    from cogumi_ray.serve.protocol import GenerationRequest

    async def get() -> Any:
        return serve.get_deployment_handle(deployment, app_name=app)

    handle = loop.run(get())
    params = GenParams(max_new_tokens=max_tokens, temperature=0.0, seed=0)

    async def one(req: GenerationRequest, model: str) -> Any:
        if deployment == "Router":
            return (await handle.complete.remote(req)).results[0]
        # As the Router sends it: the base without a model id, a modifier under its name.
        h = handle.options(multiplexed_model_id=model[7:]) if model.startswith("cogumi:") else handle
        return (await h.generate.remote(req))[0]

    def call(prompt: str, model: str) -> dict[str, Any]:
        req = GenerationRequest(_messages(prompt), params, model)
        t0 = time.perf_counter()
        res = loop.run(one(req, model))
        return {"s": time.perf_counter() - t0, "completion_tokens": res.completion_tokens,
                "prompt_tokens": res.prompt_tokens, "text": res.text}

    return call


def http_engine(base_url: str, max_tokens: int, extra: dict[str, Any] | None = None
                ) -> tuple[Call, Callable[[str, str], float]]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300)
    kw = {"extra_body": extra} if extra else {}

    def call(prompt: str, model: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = client.chat.completions.create(model=model, messages=_messages(prompt),
                                           max_tokens=max_tokens, temperature=0, seed=0, **kw)
        return {"s": time.perf_counter() - t0, "completion_tokens": r.usage.completion_tokens,
                "prompt_tokens": r.usage.prompt_tokens, "text": r.choices[0].message.content}

    def ttft(prompt: str, model: str) -> float:
        t0 = time.perf_counter()
        first = None
        stream = client.chat.completions.create(model=model, messages=_messages(prompt),
                                                max_tokens=max_tokens, temperature=0, seed=0,
                                                stream=True, **kw)
        for chunk in stream:  # read to the end: the next request must not queue behind this one
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
        return first if first is not None else time.perf_counter() - t0

    return call, ttft


def start_llama_server(gguf: str, n_ctx: int, threads: int, log_path: str) -> tuple[Any, str]:
    """llama-cpp-python's OpenAI server on `gguf`; (process, base_url), or raises with its log."""
    import httpx

    port = _free_port()
    log = open(log_path, "w")  # noqa: SIM115 - the server outlives this function
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
         "--n_threads_batch", str(threads), "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"llama_cpp.server did not start: {Path(log_path).read_text()[-2000:]}")


# --- measurements -----------------------------------------------------------------------------


def latency(engines: dict[str, Call], model_of: dict[str, str], rounds: int) -> dict[str, Any]:
    """Every prompt on every engine, `rounds` times, engines in a fresh random order each time."""
    rng = random.Random(0)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for _ in range(rounds):
        for prompt in PROMPTS:
            order = list(engines)
            rng.shuffle(order)
            for name in order:
                runs[name].append({"prompt": prompt, **engines[name](prompt, model_of[name])})
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        out[name] = {**_summary([r["s"] for r in rs]),
                     "completion_tokens_mean": statistics.fmean(r["completion_tokens"] for r in rs),
                     "prompt_tokens_mean": statistics.fmean(r["prompt_tokens"] for r in rs)}
    base = runs["direct"]
    for name, rs in runs.items():
        if name == "direct":
            continue
        # Paired by (round, prompt): the same work on both sides, close together in time.
        diffs = [a["s"] - b["s"] for a, b in zip(rs, base, strict=True)]
        out[name]["added_vs_direct"] = {
            "p50_ms": round(1000 * _pct(diffs, 50), 3), "p99_ms": round(1000 * _pct(diffs, 99), 3),
            "same_text_as_direct": all(a["text"] == b["text"] for a, b in zip(rs, base, strict=True)),
        }
    return out


def ttft(engines: dict[str, Callable[[str, str], float]], model_of: dict[str, str],
         rounds: int) -> dict[str, Any]:
    rng = random.Random(1)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for prompt in PROMPTS:
            order = list(engines)
            rng.shuffle(order)
            for name in order:
                times[name].append(engines[name](prompt, model_of[name]))
    return {name: _summary(ts) for name, ts in times.items()}


def throughput(engines: dict[str, Call], model_of: dict[str, str], levels: list[int],
               requests: int) -> dict[str, Any]:
    """`requests` requests per (engine, concurrency), engines rotated at each level."""
    out: dict[str, Any] = {name: {} for name in engines}
    for i, c in enumerate(levels):
        names = list(engines)
        names = names[i % len(names):] + names[: i % len(names)]
        for name in names:
            n = max(requests, 2 * c)
            jobs = [PROMPTS[k % len(PROMPTS)] for k in range(n)]
            with ThreadPoolExecutor(max_workers=c) as pool:
                t0 = time.perf_counter()
                rs = list(pool.map(lambda p, name=name: engines[name](p, model_of[name]), jobs))
                wall = time.perf_counter() - t0
            tokens = sum(r["completion_tokens"] for r in rs)
            out[name][f"c{c}"] = {"requests": n, "wall_s": round(wall, 3),
                                  "requests_per_s": round(n / wall, 2),
                                  "completion_tokens_per_s": round(tokens / wall, 1),
                                  **{f"latency_{k}": v for k, v in _summary([r["s"] for r in rs]).items()
                                     if k != "n"}}
    return out


def swap(engines: dict[str, Call], base_model: str, modifier: str, rounds: int) -> dict[str, Any]:
    """Alternating base / modifier requests (every request switches the adapter, which also drops
    llama.cpp's cached prompt prefix) against the modifier alone, on the same prompts."""
    out: dict[str, Any] = {}
    mod = f"cogumi:{modifier}"
    for name, call in engines.items():
        alternating: list[float] = []
        same: list[float] = []
        for r in range(rounds):
            # Interleaved blocks: one alternating pass, one same-option pass, per round.
            for k, prompt in enumerate(PROMPTS):
                alternating.append(call(prompt, mod if (r * len(PROMPTS) + k) % 2 else base_model)["s"])
            for prompt in PROMPTS:
                same.append(call(prompt, mod)["s"])
        a, s = _summary(alternating), _summary(same)
        out[name] = {"alternating": a, "same_option": s,
                     "swap_ms_p50": round(a["p50_ms"] - s["p50_ms"], 3),
                     "swap_ms_mean": round(a["mean_ms"] - s["mean_ms"], 3)}
    return out


def swap_op(gen: Any, modifier: str, n: int = 2000) -> dict[str, Any]:
    """The backend's own switch (llama_set_adapters_lora + dropping the KV cache), timed alone."""
    gen.load_adapter(modifier)
    with gen._lock:  # the model server's lock: nothing decodes while we switch
        t0 = time.perf_counter()
        for i in range(n):
            gen._set_active(modifier if i % 2 == 0 else None)
        seconds = time.perf_counter() - t0
        gen._set_active(None)
    return {"switches": n, "us_per_switch": round(1e6 * seconds / n, 2)}


def policy_cost(cfg: Any, n: int = 20000) -> dict[str, Any]:
    """The routing policy's decision alone (what the Router deployment computes per request)."""
    from cogumi_ray.serve.policy import make_policy

    policy = make_policy(cfg)
    t0 = time.perf_counter()
    for i in range(n):
        policy.decide(_messages(PROMPTS[i % len(PROMPTS)]), "cogumi")
    return {"decisions": n, "us_per_decision": round(1e6 * (time.perf_counter() - t0) / n, 3)}


# --- main -------------------------------------------------------------------------------------


def serve_config(args: argparse.Namespace) -> Any:
    from cogumi_ray.serve.config import DeploymentConfig, ServeConfig

    if args.gguf:
        adapters = dict(a.split("=", 1) for a in args.adapter)
        cfg = ServeConfig(base=args.gguf, adapters=adapters)
    else:
        from cogumi_ray.config import load_config
        from cogumi_ray.serve.from_run import serve_config_for_run

        run = Path(args.run).resolve()
        cfg = serve_config_for_run(load_config(None, {"run.name": run.name,
                                                      "run.root": str(run.parent)}))
    # One llama.cpp thread everywhere (the replica, in-process, llama.cpp's server): the same
    # compute per engine, and room on a 2-core box for the proxy and the client.
    return cfg.model_copy(update={
        "port": _free_port(), "api_keys": [], "api_key_env": None,
        "llama_cpp": cfg.llama_cpp.model_copy(update={"n_threads": args.threads}),
        "generator": DeploymentConfig(num_cpus=1, max_ongoing_requests=64),
    })


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo", help="run whose served GGUF + adapters to use")
    p.add_argument("--gguf", help="a GGUF instead of the run's")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=LORA.gguf",
                   help="with --gguf: a LoRA modifier (repeatable)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=8, help="passes over the 8 prompts (latency, TTFT, swap)")
    p.add_argument("--requests", type=int, default=48, help="requests per throughput level")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads of every engine")
    p.add_argument("--no-llama-server", action="store_true")
    p.add_argument("--via-router", action="store_true",
                   help="also time forced requests through the Router (a second app)")
    p.add_argument("--out", help="write the JSON summary here")
    args = p.parse_args(argv)

    import logging

    import ray
    from ray import serve

    from cogumi_ray.config import RayConfig
    from cogumi_ray.ray_session import init_ray
    from cogumi_ray.serve.app import build_app

    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    cfg = serve_config(args)
    levels = [int(c) for c in args.concurrency.split(",")]
    modifier = sorted(cfg.adapters)[0] if cfg.adapters else None
    base_name = cfg.served_base_name()
    init_ray(RayConfig(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False,
                       object_store_memory_mb=512))
    serve.start(http_options={"host": "127.0.0.1", "port": cfg.port})
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix="/")
    url = f"http://127.0.0.1:{cfg.port}/v1"
    forced_engines: dict[str, Call] = {}
    if args.via_router:
        # The same graph with forced requests through the Router, beside it on the proxy (a small
        # CPU share for its replicas: only one app is called at a time).
        via = cfg.model_copy(update={
            "app_name": cfg.app_name + "-via-router", "route_prefix": "/via-router",
            "direct_forced": False, "generator": cfg.generator.model_copy(update={"num_cpus": 0.4})})
        serve.run(build_app(via), name=via.app_name, route_prefix=via.route_prefix)
        forced_engines["serve_forced_via_router"], _ = http_engine(
            f"http://127.0.0.1:{cfg.port}/via-router/v1", args.max_tokens)
    gen, direct_call, direct_ttft = direct_engine(cfg, args.max_tokens)
    serve_call, serve_ttft = http_engine(url, args.max_tokens)
    loop = _Loop()
    calls: dict[str, Call] = {
        "direct": direct_call,
        "generator_handle": handle_engine(loop, cfg.app_name, "Generator", args.max_tokens),
        "router_handle": handle_engine(loop, cfg.app_name, "Router", args.max_tokens),
        "serve": serve_call,
    }
    ttfts: dict[str, Callable[[str, str], float]] = {"direct": direct_ttft, "serve": serve_ttft}
    # The Router hop is timed on the base's name: the routed policy keeps the last query's
    # embedding (a progressive turn re-reads it), so a routed handle call right before the same
    # prompt's routed HTTP call would let that one skip its embedding. Routing is timed apart.
    model_of = {"direct": base_name, "generator_handle": base_name, "router_handle": base_name,
                "serve": "cogumi", "llama_server": base_name}
    server, notes = None, []
    if not args.no_llama_server:
        try:
            server, server_url = start_llama_server(cfg.base or "", cfg.llama_cpp.n_ctx, args.threads,
                                                    "/tmp/cogumi-bench-llama-server.log")
            # llama.cpp's server penalises repeats by default (1.1); cogumi's decode loop does not.
            calls["llama_server"], ttfts["llama_server"] = http_engine(
                server_url, args.max_tokens, {"repeat_penalty": 1.0})
        except RuntimeError as e:
            notes.append(str(e))
    try:
        for name, call in [*calls.items(), *forced_engines.items()]:  # first-request costs
            for prompt in PROMPTS[:3]:                                   # are not latency
                call(prompt, model_of.get(name, base_name))
        result: dict[str, Any] = {
            "gguf": cfg.base, "adapters": cfg.adapters, "max_tokens": args.max_tokens,
            "threads": args.threads, "cpus": os.cpu_count(), "ray": ray.__version__,
            "serve_env": {k: v for k, v in os.environ.items() if k.startswith("RAY_SERVE_")},
            "latency": latency(calls, model_of, args.rounds),
            "ttft": ttft(ttfts, model_of, args.rounds),
            "throughput": throughput({k: v for k, v in calls.items() if k in
                                      ("direct", "serve", "llama_server")}, model_of, levels,
                                     args.requests),
        }
        lat = result["latency"]
        routed_forced = latency({"direct": calls["direct"], "serve": serve_call,
                                 "serve_forced": serve_call, **forced_engines},
                                {**model_of, **dict.fromkeys(["serve_forced", *forced_engines],
                                                             base_name)}, args.rounds)
        forced, routed = routed_forced["serve_forced"], routed_forced["serve"]
        result["routing"] = {
            "router_hop_p50_ms": round(lat["router_handle"]["p50_ms"]
                                       - lat["generator_handle"]["p50_ms"], 3),
            "policy": policy_cost(cfg),
            "routed_minus_forced_p50_ms": round(routed["p50_ms"] - forced["p50_ms"], 3),
            "routed": routed, "forced": forced,
        }
        if "serve_forced_via_router" in routed_forced:
            via_router = routed_forced["serve_forced_via_router"]
            result["routing"]["forced_via_router"] = via_router
            result["routing"]["forced_via_router_minus_forced_p50_ms"] = round(
                via_router["p50_ms"] - forced["p50_ms"], 3)
        if modifier is not None:
            result["swap"] = {"modifier": modifier, "backend_switch": swap_op(gen, modifier), **swap(
                {"direct": direct_call, "serve": serve_call}, base_name, modifier, args.rounds)}
        else:
            notes.append("no modifiers: swap latency not measured")
        added = {k: routed_forced[e]["added_vs_direct"]["p50_ms"]
                 for k, e in (("forced", "serve_forced"), ("routed", "serve"))}
        result["targets"] = {
            "added_p50_target_ms": TARGET_ADDED_P50_MS,
            **{f"{k}_added_p50_ms": v for k, v in added.items()},
            **{f"{k}_added_p50_ok": v <= TARGET_ADDED_P50_MS for k, v in added.items()},
            **({"swap_p50_ms": result["swap"]["serve"]["swap_ms_p50"],
                "swap_target_ms": TARGET_SWAP_MS,
                "swap_ok": result["swap"]["serve"]["swap_ms_p50"] <= TARGET_SWAP_MS}
               if modifier is not None else {}),
        }
        result["notes"] = notes
    finally:
        if server is not None:
            server.kill()
        serve.shutdown()
        gen.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
