"""A local HTTP judge for tests, speaking the Anthropic Messages + Message Batches and the OpenAI
Chat Completions + Files + Batch wire formats (one aiohttp app, both APIs under /v1).

It grades deterministically from the prompt: reference grading passes when the candidate equals
the reference (case/space-insensitive); pairwise prefers the answer containing "correct".
Markers in the text under test script the real-world trouble:
- `[[fault:429,500,timeout]]`: the first attempts of that exact request fail in that order
  (timeout = the reply is delayed past the client's timeout), then it succeeds;
- `[[malformed]]`: every reply is prose without JSON; `[[malformed-once]]`: only the first ask;
- `[[flip]]` (pairwise): always prefers whichever answer is shown first (position bias);
- `[[batch-error]]`: the request errors inside a provider batch.
`always_fail` makes every completion request fail with that status; `delay_s` slows each one.
Counters record every request by route, so tests can assert that a cached re-run sends nothing;
`seen` keeps (route, headers, body) of each Anthropic request, for tests of the wire format.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

REFERENCE = re.compile(r"## Reference answer\n(.*?)\n\n## Candidate answer\n(.*)\n", re.DOTALL)
PAIR = re.compile(r"## Answer A\n(.*?)\n\n## Answer B\n(.*)\n", re.DOTALL)
FAULT = re.compile(r"\[\[fault:([a-z0-9,]+)\]\]")


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


class FakeLLMServer:
    def __init__(self, api_key: str = "test-key", timeout_sleep_s: float = 1.5,
                 polls_until_done: int = 1) -> None:
        self.api_key = api_key
        self.timeout_sleep_s = timeout_sleep_s
        self.polls_until_done = polls_until_done  # status polls answered "in progress" first
        self.hold_batches = False  # keep every batch in progress (a run interrupted mid-batch)
        self.always_fail: int | None = None
        self.delay_s = 0.0  # added to every completion (a slow API)
        self.counts: Counter[str] = Counter()
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self.attempts: Counter[str] = Counter()
        self.batches: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes([
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/batches", self.anthropic_batch_create),
            web.get("/v1/messages/batches/{id}", self.anthropic_batch_get),
            web.get("/v1/messages/batches/{id}/results", self.anthropic_batch_results),
            web.post("/v1/chat/completions", self.chat),
            web.post("/v1/files", self.file_upload),
            web.get("/v1/files/{id}/content", self.file_content),
            web.post("/v1/batches", self.openai_batch_create),
            web.get("/v1/batches/{id}", self.openai_batch_get),
        ])
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def total(self, *routes: str) -> int:
        return sum(self.counts[r] for r in routes)

    # -- the judge brain ------------------------------------------------------------------------
    def grade(self, system: str, messages: list[dict[str, Any]]) -> str:
        first = _content(messages[0])
        reasked = len(messages) > 1
        if "[[malformed]]" in first or ("[[malformed-once]]" in first and not reasked):
            return "Looks fine to me overall."
        if "grade a candidate" in system:
            m = REFERENCE.search(first)
            ref, cand = (m.group(1), m.group(2)) if m else ("", "")
            ref = FAULT.sub("", ref)
            cand = FAULT.sub("", cand.replace("[[malformed-once]]", ""))
            ok = _norm(ref) == _norm(cand)
            pts = (3, 2, 2, 3) if ok else (0, 1, 1, 0)
            names = ("factual_accuracy", "completeness", "coherence", "helpfulness")
            body = dict(zip(names, pts, strict=True))
            body.update(verdict="pass" if ok else "fail",
                        rationale="matches the reference" if ok else "differs from the reference")
            return "```json\n" + json.dumps(body) + "\n```"
        m = PAIR.search(first)
        a, b = (m.group(1), m.group(2)) if m else ("", "")
        if "[[flip]]" in first:
            winner = "A"
        else:
            ca, cb = "correct" in a, "correct" in b
            winner = "A" if ca and not cb else "B" if cb and not ca else "tie"
        return json.dumps({"winner": winner, "rationale": f"picked {winner}"})

    async def _fault(self, body: dict[str, Any]) -> web.Response | None:
        """The scripted failure for this attempt of this request, if any."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.always_fail:
            return _error(self.always_fail, "injected failure")
        blob = json.dumps(body, sort_keys=True)
        found = FAULT.search(blob)
        if not found:
            return None
        key = hashlib.sha1(blob.encode()).hexdigest()
        self.attempts[key] += 1
        plan = found.group(1).split(",")
        if self.attempts[key] > len(plan):
            return None
        step = plan[self.attempts[key] - 1]
        if step == "timeout":
            await asyncio.sleep(self.timeout_sleep_s)
            return _error(504, "too late")
        return _error(int(step), f"injected {step}", {"retry-after": "0"} if step == "429" else None)

    def _check_key(self, request: web.Request) -> web.Response | None:
        got = request.headers.get("x-api-key") or request.headers.get("authorization", "")
        if got.removeprefix("Bearer ") != self.api_key:
            return _error(401, "invalid x-api-key")
        return None

    # -- Anthropic ------------------------------------------------------------------------------
    def _message(self, params: dict[str, Any]) -> dict[str, Any]:
        text = self.grade(params.get("system", ""), params["messages"])
        prompt = params.get("system", "") + " ".join(_content(m) for m in params["messages"])
        return {
            "id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
            "model": params["model"], "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": len(prompt.split()), "output_tokens": len(text.split())},
        }

    async def messages(self, request: web.Request) -> web.Response:
        self.counts["messages"] += 1
        body = await request.json()
        self.seen.append(("messages", dict(request.headers), body))
        bad = self._check_key(request) or await self._fault(body)
        return bad or web.json_response(self._message(body))

    def _anthropic_batch(self, bid: str) -> dict[str, Any]:
        b = self.batches[bid]
        done = b["polls"] > self.polls_until_done and not self.hold_batches
        n = len(b["requests"])
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {
            "id": bid, "type": "message_batch", "created_at": now, "expires_at": now,
            "ended_at": now if done else None, "archived_at": None, "cancel_initiated_at": None,
            "processing_status": "ended" if done else "in_progress",
            "request_counts": {"processing": 0 if done else n, "succeeded": n if done else 0,
                               "errored": 0, "canceled": 0, "expired": 0},
            "results_url": f"{self.url}/v1/messages/batches/{bid}/results" if done else None,
        }

    async def anthropic_batch_create(self, request: web.Request) -> web.Response:
        self.counts["anthropic_batch_create"] += 1
        if bad := self._check_key(request):
            return bad
        body = await request.json()
        self.seen.append(("anthropic_batch_create", dict(request.headers), body))
        bid = f"msgbatch_{uuid.uuid4().hex[:16]}"
        self.batches[bid] = {"requests": body["requests"], "polls": 0}
        return web.json_response(self._anthropic_batch(bid))

    async def anthropic_batch_get(self, request: web.Request) -> web.Response:
        self.counts["batch_poll"] += 1
        bid = request.match_info["id"]
        if bid not in self.batches:
            return _error(404, f"no batch {bid}")
        self.batches[bid]["polls"] += 1
        return web.json_response(self._anthropic_batch(bid))

    async def anthropic_batch_results(self, request: web.Request) -> web.Response:
        self.counts["batch_results"] += 1
        lines = []
        for r in self.batches[request.match_info["id"]]["requests"]:
            if "[[batch-error]]" in json.dumps(r):
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "api_error", "message": "injected batch error"}}}
            else:
                result = {"type": "succeeded", "message": self._message(r["params"])}
            lines.append(json.dumps({"custom_id": r["custom_id"], "result": result}))
        return web.Response(body="\n".join(lines) + "\n", content_type="application/binary")

    # -- OpenAI ---------------------------------------------------------------------------------
    def _completion(self, params: dict[str, Any]) -> dict[str, Any]:
        msgs = params["messages"]
        system = _content(msgs[0]) if msgs and msgs[0]["role"] == "system" else ""
        rest = [m for m in msgs if m["role"] != "system"]
        text = self.grade(system, rest)
        prompt = " ".join(_content(m) for m in msgs)
        pt, ct = len(prompt.split()), len(text.split())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": params["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
        }

    async def chat(self, request: web.Request) -> web.Response:
        self.counts["chat"] += 1
        body = await request.json()
        bad = self._check_key(request) or await self._fault(body)
        return bad or web.json_response(self._completion(body))

    async def file_upload(self, request: web.Request) -> web.Response:
        self.counts["file_upload"] += 1
        form = await request.post()
        upload = form["file"]
        data = upload.file.read() if hasattr(upload, "file") else bytes(upload)
        fid = f"file-{uuid.uuid4().hex[:16]}"
        self.files[fid] = data
        return web.json_response({"id": fid, "object": "file", "bytes": len(data),
                                  "created_at": int(time.time()), "filename": "batch.jsonl",
                                  "purpose": str(form.get("purpose")), "status": "processed"})

    async def file_content(self, request: web.Request) -> web.Response:
        self.counts["file_content"] += 1
        return web.Response(body=self.files[request.match_info["id"]],
                            content_type="application/octet-stream")

    def _openai_batch(self, bid: str) -> dict[str, Any]:
        b = self.batches[bid]
        done = b["polls"] > self.polls_until_done and not self.hold_batches
        if done and "output_file_id" not in b:
            out, err = [], []
            for line in self.files[b["input_file_id"]].decode().splitlines():
                req = json.loads(line)
                rec = {"id": f"batch_req_{uuid.uuid4().hex[:8]}", "custom_id": req["custom_id"]}
                if "[[batch-error]]" in line:
                    err.append({**rec, "response": None,
                                "error": {"code": "server_error", "message": "injected"}})
                else:
                    body = self._completion(req["body"])
                    out.append({**rec, "error": None,
                                "response": {"status_code": 200, "request_id": "r", "body": body}})
            for name, recs in (("output_file_id", out), ("error_file_id", err)):
                if recs:
                    fid = f"file-{uuid.uuid4().hex[:16]}"
                    self.files[fid] = ("\n".join(json.dumps(r) for r in recs) + "\n").encode()
                    b[name] = fid
        return {"id": bid, "object": "batch", "endpoint": "/v1/chat/completions",
                "completion_window": "24h", "created_at": int(time.time()),
                "input_file_id": b["input_file_id"], "status": "completed" if done else "in_progress",
                "output_file_id": b.get("output_file_id"), "error_file_id": b.get("error_file_id")}

    async def openai_batch_create(self, request: web.Request) -> web.Response:
        self.counts["openai_batch_create"] += 1
        body = await request.json()
        bid = f"batch_{uuid.uuid4().hex[:16]}"
        self.batches[bid] = {"input_file_id": body["input_file_id"], "polls": 0}
        return web.json_response(self._openai_batch(bid))

    async def openai_batch_get(self, request: web.Request) -> web.Response:
        self.counts["batch_poll"] += 1
        bid = request.match_info["id"]
        if bid not in self.batches:
            return _error(404, f"no batch {bid}")
        self.batches[bid]["polls"] += 1
        return web.json_response(self._openai_batch(bid))


def _content(message: dict[str, Any]) -> str:
    c = message.get("content", "")
    if isinstance(c, list):
        return "".join(part.get("text", "") for part in c)
    return str(c)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    # The same body shape serves both SDKs: Anthropic reads error.type/message, OpenAI error.message.
    body = {"type": "error", "error": {"type": "api_error", "message": message}}
    return web.json_response(body, status=status, headers=headers)
