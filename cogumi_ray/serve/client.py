"""The endpoint's client side: the official `openai` SDK against `base_url`, plus which option
answered each request (the `x-cogumi-option` and `x-cogumi-confidence` headers, else the
`cogumi` field of the stream's chunks). Used by the chat UI and by `cogumi demo`'s queries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cogumi_ray.serve.feedback import bare_request_id
from cogumi_ray.serve.policy import ROUTED  # the model id that lets the router choose

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
BASE_URL_ENV = "COGUMI_BASE_URL"
API_KEY_ENV = "COGUMI_API_KEY"  # the client's key; COGUMI_API_KEYS is the server's list
SERVER_KEYS_ENV = "COGUMI_API_KEYS"


def resolve_endpoint(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """Arguments first, then $COGUMI_BASE_URL / $COGUMI_API_KEY, then the first of the server's
    own $COGUMI_API_KEYS (a UI started beside `cogumi serve` needs no key of its own)."""
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        server_keys = [k.strip() for k in os.environ.get(SERVER_KEYS_ENV, "").split(",") if k.strip()]
        # A server without keys accepts any bearer; the SDK insists on a non-empty one.
        key = server_keys[0] if server_keys else "no-key"
    return url.rstrip("/"), key


@dataclass(frozen=True)
class Routing:
    """Which option answered one request, as the server reported it."""

    option: str
    confidence: float | None
    model: str
    request_id: str

    @classmethod
    def from_response(cls, headers: Any, chunk: Any | None) -> Routing | None:
        """From the headers when present (known before the first token), else from a chunk."""
        info = getattr(chunk, "cogumi", None) if chunk is not None else None
        option = headers.get("x-cogumi-option") or (info or {}).get("option")
        if option is None:
            return None  # not a cogumi server, or nothing arrived yet
        raw = headers.get("x-cogumi-confidence")
        if raw is not None:
            confidence = None if raw == "none" else float(raw)
        else:
            confidence = (info or {}).get("confidence")
        rid = headers.get("x-request-id") or bare_request_id(getattr(chunk, "id", "") or "")
        return cls(option, confidence, getattr(chunk, "model", None) or "", rid)


class ChatClient:
    """Calls to the endpoint, free of Gradio (so they can be used and tested alone)."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 120.0) -> None:
        import openai

        self.base_url, key = resolve_endpoint(base_url, api_key)
        # No retries: a retried chat would stream a second, different answer into the same bubble.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0,
                                    timeout=timeout_s)

    def models(self) -> list[str]:
        """`cogumi` (routed) first, then the forced options the server lists."""
        ids = [m.id for m in self.client.models.list()]
        return [ROUTED] + [i for i in ids if i != ROUTED]

    def stream(self, model: str, messages: list[dict[str, str]], *, temperature: float,
               max_tokens: int) -> Iterator[tuple[str, Routing | None, str | None]]:
        """(answer so far, routing, finish reason once known) after every piece of text and at
        the end; raises `openai.APIError`."""
        text = ""
        routing: Routing | None = None
        finish: str | None = None
        with self.client.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True, temperature=temperature,  # type: ignore[arg-type]
            max_tokens=max_tokens,
        ) as resp:
            routing = Routing.from_response(resp.headers, None)
            if routing is not None:
                yield text, routing, None  # the decision shows before the first token
            for chunk in resp.parse():
                if routing is None or not routing.model:
                    routing = Routing.from_response(resp.headers, chunk) or routing
                if not chunk.choices:
                    continue  # the usage chunk
                finish = chunk.choices[0].finish_reason or finish
                piece = chunk.choices[0].delta.content
                if piece:
                    text += piece
                    yield text, routing, None
        yield text, routing, finish or "unknown"  # not None: the table marks the answer done

    def feedback(self, rating: str, *, request_id: str | None, session_id: str | None,
                 comment: str | None = None) -> dict[str, Any]:
        """POST /v1/feedback; the server's receipt (what it stored)."""
        body = {"request_id": request_id, "session_id": session_id, "rating": rating,
                "comment": comment or None}
        return self.client.post("/feedback", cast_to=object,
                                body={k: v for k, v in body.items() if v is not None})
