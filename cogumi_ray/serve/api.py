"""The OpenAI-compatible HTTP API as a FastAPI app over an `Upstream` (the router).

It knows OpenAI's shapes and our limits, nothing about models: the same app runs on Ray Serve
(`Ingress`, over deployment handles) and in-process in the unit tests (over a fake upstream).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from cogumi_ray.generate.config import GenParams
from cogumi_ray.serve import openai_schema as oa
from cogumi_ray.serve.config import LimitsConfig, ServeConfig
from cogumi_ray.serve.errors import ServeError, bad_request
from cogumi_ray.serve.feedback import (
    FeedbackRecord,
    FeedbackRequest,
    FeedbackStore,
    feedback_store_for,
)
from cogumi_ray.serve.gate import Gate, error_response
from cogumi_ray.serve.limits import (
    Authenticator,
    RateLimiter,
    check_n,
    check_prompt_chars,
    resolve_max_tokens,
)
from cogumi_ray.serve.protocol import Decision, GenerationRequest, GenResult, Piece, Upstream

log = logging.getLogger(__name__)
T = TypeVar("T")


def build_api(cfg: ServeConfig, upstream: Upstream, key_digests: frozenset[str] = frozenset(),
              *, echo_request_id: bool = True, feedback: FeedbackStore | None = None) -> FastAPI:
    """The app; `echo_request_id=False` behind Serve's proxy, which sets x-request-id itself.

    `feedback` keeps the ratings of POST /v1/feedback (default: the session store when `cfg`
    has session memory, else a ring buffer in this process).
    """
    app = FastAPI(title="cogumi", version="1", docs_url=None, redoc_url=None)
    app.add_middleware(Gate, auth=Authenticator(key_digests), limiter=RateLimiter(cfg.rate_limit),
                       limits=cfg.limits, echo_request_id=echo_request_id)
    _add_error_handlers(app)
    started = int(time.time())
    limits = cfg.limits
    ratings: FeedbackStore = feedback if feedback is not None else feedback_store_for(cfg)

    async def within_deadline(aw: Awaitable[T], deadline: float) -> T:
        try:
            return await asyncio.wait_for(aw, max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise ServeError(504, f"The request took longer than {cfg.request_timeout_s:g} s.",
                             type="timeout", code="timeout") from None

    async def answer(request: Request, body: oa.ChatCompletionRequest | oa.CompletionRequest,
                     prompts: list[Any], chat: bool) -> Response:
        rid = request.state.request_id
        deadline = time.monotonic() + cfg.request_timeout_s
        params = _params(body, limits)
        check_n(body.n, limits)
        reqs = [GenerationRequest(p, params, body.model, body.n) for p in prompts]
        t0 = time.perf_counter()
        if body.stream:
            if len(reqs) != 1:
                raise bad_request("Streaming takes one prompt per request.", param="prompt")
            return await _stream(reqs[0], rid, chat, body.include_usage(), upstream,
                                 lambda aw: within_deadline(aw, deadline))
        # A list of completion prompts is routed prompt by prompt; the response reports the
        # first prompt's decision (today's name policy gives every prompt the same one).
        routed = await within_deadline(
            asyncio.gather(*(_guarded(upstream.complete(r)) for r in reqs)), deadline)
        decision = routed[0].decision
        results = [res for r in routed for res in r.results]
        prompt_tokens = sum(r.results[0].prompt_tokens for r in routed)  # once per prompt, not per n
        completion_tokens = sum(r.completion_tokens for r in results)
        usage = oa.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                         total_tokens=prompt_tokens + completion_tokens)
        info = oa.CogumiInfo(option=decision.option, confidence=decision.confidence,
                        switched_after=decision.switched_after)
        created = int(time.time())
        out: oa.ChatCompletion | oa.Completion
        if chat:
            out = oa.ChatCompletion(
                id=f"chatcmpl-{rid}", created=created, model=decision.model, usage=usage, cogumi=info,
                choices=[oa.ChatChoice(index=i, message=oa.AssistantMessage(content=r.text),
                                       finish_reason=r.finish_reason) for i, r in enumerate(results)])
        else:
            out = oa.Completion(
                id=f"cmpl-{rid}", created=created, model=decision.model, usage=usage, cogumi=info,
                choices=[oa.CompletionChoice(index=i, text=r.text, finish_reason=r.finish_reason)
                         for i, r in enumerate(results)])
        log.info("%s %s option=%s tokens=%d+%d %.0f ms", rid, body.model, decision.option,
                 usage.prompt_tokens, usage.completion_tokens, 1000 * (time.perf_counter() - t0))
        return JSONResponse(out.model_dump(), headers=_decision_headers(decision))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        ids = await _guarded(upstream.models())
        return oa.ModelList(data=[oa.ModelCard(id=i, created=started) for i in ids]).model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: oa.ChatCompletionRequest, request: Request) -> Response:
        messages = [m.as_dict() for m in body.messages]
        check_prompt_chars(sum(len(m["content"]) for m in messages), limits, "messages")
        return await answer(request, body, [messages], chat=True)

    @app.post("/v1/completions")
    async def completions(body: oa.CompletionRequest, request: Request) -> Response:
        prompts = body.prompts()
        check_prompt_chars(sum(len(p) for p in prompts), limits, "prompt")
        return await answer(request, body, list(prompts), chat=False)

    @app.post("/v1/feedback")
    async def post_feedback(body: FeedbackRequest) -> dict[str, Any]:
        record = FeedbackRecord.from_request(body)
        await _guarded(ratings.add(record))
        return {"object": "feedback", **record.as_dict()}  # the receipt: what was stored

    return app


def _params(body: oa.ChatCompletionRequest | oa.CompletionRequest, limits: LimitsConfig) -> GenParams:
    max_tokens = resolve_max_tokens(body.requested_max_tokens(), limits)
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    return GenParams(max_new_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                     stop=body.stops(), seed=seed)


def _decision_headers(decision: Decision) -> dict[str, str]:
    conf = "none" if decision.confidence is None else f"{decision.confidence:.4f}"
    headers = {"x-cogumi-option": decision.option, "x-cogumi-confidence": conf}
    if decision.switched_after is not None:  # a progressive policy left the base after k tokens
        headers["x-cogumi-switched-after"] = str(decision.switched_after)
    return headers


async def _guarded(aw: Awaitable[T]) -> T:
    """Let ServeError through; anything else is a 500 in OpenAI's shape (and in the log)."""
    try:
        return await aw
    except (ServeError, StopAsyncIteration, asyncio.CancelledError):
        raise
    except Exception as e:
        log.exception("upstream failed")
        raise ServeError(500, f"The model server failed: {type(e).__name__}: {e}",
                         type="server_error", code="internal_error") from None


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def _aclose(items: AsyncIterator[Any]) -> None:
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()  # stops the router's stream and with it the model server's decoding


async def _stream(req: GenerationRequest, rid: str, chat: bool, include_usage: bool,
                  upstream: Upstream, timed: Callable[[Awaitable[Any]], Awaitable[Any]]) -> Response:
    items = upstream.stream(req).__aiter__()
    # Read the decision and the first piece before answering 200, so a refused request (unknown
    # model, prompt too long) is still an HTTP error and not an error event inside the stream.
    try:
        decision = await timed(_guarded(items.__anext__()))
        if not isinstance(decision, Decision):
            raise ServeError(500, "the router did not start the stream with its decision",
                             type="server_error")
        first = await timed(_guarded(items.__anext__()))
    except BaseException:
        await _aclose(items)
        raise
    info = oa.CogumiInfo(option=decision.option, confidence=decision.confidence,
                        switched_after=decision.switched_after)
    created = int(time.time())
    sid = f"{'chatcmpl' if chat else 'cmpl'}-{rid}"

    def chunk(index: int, text: str | None, finish: str | None) -> bytes:
        if chat:
            delta = {} if text is None else {"content": text}
            return _sse(oa.chat_chunk(sid, created, decision.model, info, index, delta, finish))
        return _sse(oa.completion_chunk(sid, created, decision.model, info, index, text or "",
                                        finish))

    async def events() -> AsyncIterator[bytes]:
        done: list[GenResult] = []
        started: set[int] = set()
        piece: Decision | Piece | None = first
        try:
            while piece is not None:
                assert isinstance(piece, Piece)
                if chat and piece.index not in started:  # OpenAI opens each choice with the role
                    started.add(piece.index)
                    yield _sse(oa.chat_chunk(sid, created, decision.model, info, piece.index,
                                             {"role": "assistant", "content": ""}, None))
                if piece.done is not None:
                    done.append(piece.done)
                    yield chunk(piece.index, None, piece.done.finish_reason)
                elif piece.text:
                    yield chunk(piece.index, piece.text, None)
                try:
                    piece = await timed(_guarded(items.__anext__()))
                except StopAsyncIteration:
                    piece = None
        except ServeError as e:  # mid-stream: the SDK raises on an event with an "error" key
            yield _sse(e.body())
            return
        finally:
            await _aclose(items)  # also when the client is gone mid-stream
        if include_usage and done:
            prompt = done[0].prompt_tokens
            completion = sum(r.completion_tokens for r in done)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                     "total_tokens": prompt + completion}
            yield _sse({"id": sid, "object": "chat.completion.chunk" if chat else "text_completion",
                        "created": created, "model": decision.model, "choices": [],
                        "usage": usage, "cogumi": info.model_dump()})
        yield _sse("[DONE]")

    headers = {**_decision_headers(decision), "cache-control": "no-cache"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error leaves in OpenAI's shape: {"error": {message, type, param, code}}."""

    async def serve_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServeError)
        return error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            err = ServeError(400, "The request body is not valid JSON.", code="invalid_json")
        else:
            first = errors[0] if errors else {}
            loc = [str(p) for p in first.get("loc", ()) if p != "body"]
            param = ".".join(loc) or None
            what = "unknown parameter" if first.get("type") == "extra_forbidden" else first.get("msg")
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            err = ServeError(422, f"{param or 'body'}: {what}{more}", code="invalid_request",
                             param=param)
        return error_response(err)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = ServeError(exc.status_code, str(exc.detail), code=code,
                         headers=dict(exc.headers or {}))
        return error_response(err)

    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)

