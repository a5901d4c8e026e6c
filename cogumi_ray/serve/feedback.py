"""Thumbs up/down on answers: the body of `POST /v1/feedback` and where ratings are kept.

The HTTP layer only validates a rating and hands a `FeedbackRecord` to a `FeedbackStore`. With
session memory (a learned policy with serve.sessions_path) that is `SessionFeedbackStore`: the
rating goes into the session store's SQLite file, joined to the routed turn it judges by the
request id every answer carries in `x-request-id` and in its `id`. Without it, an in-memory ring
buffer per ingress replica plus a log line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from cogumi_ray.route.memory import SessionStore
    from cogumi_ray.serve.config import ServeConfig

log = logging.getLogger(__name__)

Rating = Literal["up", "down"]
# An answer's `id` is "chatcmpl-<request id>" (or "cmpl-..."); either form names the same request.
_ID_PREFIXES = ("chatcmpl-", "cmpl-")


class FeedbackRequest(BaseModel):
    """The body: which answer (request_id) or conversation (session_id), and the verdict."""

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="The rated answer: its x-request-id header or its id (chatcmpl-...).")
    session_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="The client's conversation id, when the rating is about a whole session.")
    rating: Rating = Field(description="up or down.")
    comment: str | None = Field(None, max_length=2000, description="Free text, optional.")

    @model_validator(mode="after")
    def _names_something(self) -> FeedbackRequest:
        if self.request_id is None and self.session_id is None:
            raise ValueError("give request_id (the rated answer) or session_id (the conversation)")
        return self


@dataclass(frozen=True)
class FeedbackRecord:
    id: str
    request_id: str | None  # bare, without the chatcmpl-/cmpl- prefix
    session_id: str | None
    rating: Rating
    comment: str | None
    received_at: float  # unix seconds

    @classmethod
    def from_request(cls, body: FeedbackRequest) -> FeedbackRecord:
        rid = None if body.request_id is None else bare_request_id(body.request_id)
        return cls(id=f"fb-{uuid.uuid4().hex[:24]}", request_id=rid, session_id=body.session_id,
                   rating=body.rating, comment=body.comment, received_at=time.time())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bare_request_id(answer_id: str) -> str:
    """The request id inside an answer's id ("chatcmpl-<rid>" -> "<rid>"); other ids unchanged."""
    for prefix in _ID_PREFIXES:
        if answer_id.startswith(prefix):
            return answer_id[len(prefix):]
    return answer_id


@runtime_checkable
class FeedbackStore(Protocol):
    """Where accepted ratings go. Async, so a Ray actor (session memory) can implement it."""

    async def add(self, record: FeedbackRecord) -> None: ...


class RingBufferFeedbackStore:
    """The last `capacity` ratings in memory (lost on restart), each also logged as one line."""

    def __init__(self, capacity: int = 1000) -> None:
        self._records: deque[FeedbackRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()  # add() runs on the event loop, recent() from any thread

    async def add(self, record: FeedbackRecord) -> None:
        with self._lock:
            self._records.append(record)
        _log(record)

    def recent(self, limit: int | None = None) -> list[FeedbackRecord]:
        with self._lock:
            items = list(self._records)
        return items if limit is None else items[max(0, len(items) - limit):]


def _log(record: FeedbackRecord, joined: str = "") -> None:
    # The comment's length only: free text may hold personal data, the log is kept longer.
    log.info("feedback %s request=%s session=%s rating=%s comment_chars=%d%s", record.id,
             record.request_id, record.session_id, record.rating, len(record.comment or ""), joined)


class SessionFeedbackStore:
    """Ratings kept in session memory, beside the turns the router recorded. A rating whose
    request id names a kept turn is joined to it (and marks that turn up or down, which the
    session's likely option then weighs); any other rating is stored all the same."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    async def add(self, record: FeedbackRecord) -> None:
        # SQLite may wait on another replica's write lock: not on the event loop.
        joined = await asyncio.to_thread(
            self.store.rate, record.id, 1 if record.rating == "up" else -1,
            request_id=record.request_id, client_session=record.session_id,
            comment=record.comment, now=record.received_at)
        _log(record, f" turn={joined[0]}#{joined[1]}" if joined else " turn=none")


def feedback_store_for(cfg: ServeConfig) -> FeedbackStore:
    """Session memory when the config has one (a learned policy records turns at sessions_path),
    else a ring buffer."""
    if cfg.policy == "learned" and cfg.sessions_path:
        from cogumi_ray.route.memory import SessionStore

        return SessionFeedbackStore(SessionStore(cfg.sessions_path, cfg.session_memory))
    return RingBufferFeedbackStore()
