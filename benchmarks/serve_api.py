"""The cost of cogumi's HTTP layer alone: the OpenAI-compatible FastAPI app of `serve/api.py`
(auth, limits, request parsing, the response and its headers) over an in-process upstream that
answers at once, against a bare FastAPI endpoint returning a chat completion of the same shape.
No Ray, no sockets (httpx's ASGI transport): what is left of the Serve graph's added latency is
Serve's proxy and the hops between processes.

    .venv/bin/python benchmarks/serve_api.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BODY = {"model": "cogumi:code", "max_tokens": 32, "temperature": 0,
        "messages": [{"role": "user", "content": "What is 48 + 17? Answer with the number only."}]}


class InstantUpstream:
    """`protocol.Upstream` that answers every request at once with the name policy's option."""

    def __init__(self) -> None:
        from cogumi_ray.serve.policy import NamePolicy

        self.policy = NamePolicy("tiny", ["code"])

    async def models(self) -> list[str]:
        return self.policy.models()

    async def complete(self, request: Any) -> Any:
        from cogumi_ray.serve.protocol import GenResult, Routed

        return Routed(self.policy.decide([], request.model), [GenResult("65", "stop", 31, 2)])

    async def stream(self, request: Any) -> Any:
        raise NotImplementedError  # only non-streaming requests are timed


def bare_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict) -> dict:
        return {"id": "chatcmpl-0", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "65"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 31, "completion_tokens": 2, "total_tokens": 33}}

    return app


async def p50_ms(app: Any, requests: int) -> float:
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c:
        for _ in range(min(200, requests)):  # warm-up
            r = await c.post("/v1/chat/completions", json=BODY)
            r.raise_for_status()
        times = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await c.post("/v1/chat/completions", json=BODY)
            times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--out", help="write the JSON summary here")
    args = p.parse_args(argv)

    from cogumi_ray.serve.api import build_api
    from cogumi_ray.serve.config import ServeConfig

    cfg = ServeConfig(base="tiny.gguf", adapters={"code": "code.gguf"})
    apps = {"cogumi_api": build_api(cfg, InstantUpstream(), frozenset(), echo_request_id=False),
            "bare_fastapi": bare_app()}
    runs: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(2):  # alternate, so drift on the box hits both
        for name, app in apps.items():
            runs[name].append(asyncio.run(p50_ms(app, args.requests)))
    result = {"requests": args.requests,
              "p50_ms": {name: min(v) for name, v in runs.items()},
              "passes": runs}
    result["cogumi_minus_bare_p50_ms"] = round(result["p50_ms"]["cogumi_api"]
                                               - result["p50_ms"]["bare_fastapi"], 3)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
