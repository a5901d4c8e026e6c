"""What every LLM judge client shares: caching, retries with backoff, a QPS limit, bounded
concurrency, provider batch jobs and cost accounting. A provider adds only the wire calls
(`_send`, the `_batch_*` hooks) and `_classify` for its SDK's exceptions.

Failure policy: 429/5xx/timeouts/connection errors are retried with exponential backoff and
jitter; once retries are exhausted the request comes back with `error` set and the row becomes
`unjudged` (never `fail`: the model under test did nothing wrong). Errors that no retry can fix
for any row (bad key, unknown model) raise JudgeError at once instead of burning a whole run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from cogumi_ray.errors import JudgeError
from cogumi_ray.judge.cache import JudgeCache
from cogumi_ray.judge.clients.limits import CircuitBreaker, TokenBucket, backoff_delay
from cogumi_ray.judge.config import JudgeConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ChatRequest:
    """One judge call: a system prompt and a conversation of (role, text) turns."""

    system: str
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    temperature: float = 0.0
    schema: str | None = None  # JSON schema text for structured output, where the API takes one


@dataclass(frozen=True)
class Reply:
    text: str
    input_tokens: int
    output_tokens: int


@dataclass
class ChatResult:
    text: str | None  # None when the request failed for good (see error)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False  # served from the cache: this run paid nothing for it
    error: str | None = None


Kind = Literal["retry", "row", "fatal"]


@dataclass(frozen=True)
class Failure:
    """How a provider classifies an exception: retry it, give up on this row, or stop the run."""

    kind: Kind
    message: str
    retry_after_s: float | None = None
    status: int | None = None  # HTTP status, when there was a response


class GaveUp(Exception):
    """Retries exhausted or a row-level error; carries the message recorded on the row."""


class Exhausted(GaveUp):
    """Every retry failed: the API is unreachable or overloaded (not this request's fault)."""


class BatchGone(GaveUp):
    """The provider no longer knows a batch we remembered (expired, deleted, other account)."""


def api_key_from_env(var: str | None, judge: str, required: bool = True) -> str | None:
    """Read the key from the environment; the error names the variable, never a value."""
    if var is None:
        return None
    key = os.environ.get(var)
    if not key and required:
        raise JudgeError(
            f"judge {judge!r} needs an API key in the environment variable {var}, which is not set. "
            f"To resolve: export {var}=... on every node (or pass it with "
            f"`ray job submit --runtime-env-json '{{\"env_vars\": {{\"{var}\": ...}}}}'`), "
            "or choose another variable with judge.api_key_env."
        )
    return key or None


class JudgeClient(ABC):
    """Base of the provider clients; `complete_many` is the one entry point the judges use."""

    def __init__(self, cfg: JudgeConfig, cache: JudgeCache | None = None, qps: float | None = None):
        self.cfg = cfg
        self.model = cfg.model_name
        self.cache = cache
        qps = qps if qps is not None else cfg.qps  # the Ray actors pass their share of cfg.qps
        self.bucket = TokenBucket(qps) if qps else None
        self.price = cfg.prices.get(self.model)
        if self.price is None and cfg.judge != "openai_compatible":
            raise JudgeError(
                f"no price for judge model {self.model!r} in judge.prices (known: "
                f"{sorted(cfg.prices)}). To resolve: add judge.prices.{self.model} = "
                "{input_per_mtok: ..., output_per_mtok: ...} so cost can be accounted."
            )
        self.breaker = CircuitBreaker(cfg.circuit_breaker, cfg.circuit_cooldown_s)
        self._pool = ThreadPoolExecutor(cfg.max_in_flight, thread_name_prefix="judge-http")

    # -- identity and accounting ------------------------------------------------------------
    @property
    def judge_id(self) -> str:
        """Cache namespace: provider and model (and endpoint, whose model names are local)."""
        base = f"{self.cfg.judge}:{self.model}"
        return f"{base}@{self.cfg.base_url}" if self.cfg.judge == "openai_compatible" else base

    sends_temperature = True  # whether the provider's API takes a sampling temperature

    def key(self, req: ChatRequest) -> str:
        # Only what is sent decides the reply: a temperature the API never sees is not keyed.
        temperature = req.temperature if self.sends_temperature else None
        blob = json.dumps([self.judge_id, req.system, req.messages, req.max_tokens,
                           temperature, req.schema], ensure_ascii=False)
        return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()

    def cost(self, input_tokens: int, output_tokens: int, batch: bool) -> float:
        if self.price is None:  # self-hosted endpoint without a price: nothing billed
            return 0.0
        usd = (input_tokens * self.price.input_per_mtok
               + output_tokens * self.price.output_per_mtok) / 1e6
        return usd * (self.cfg.batch_discount if batch else 1.0)

    # -- provider hooks -----------------------------------------------------------------------
    @abstractmethod
    def _send(self, req: ChatRequest) -> Reply:
        """One synchronous API call (no retries here)."""

    @abstractmethod
    def _classify(self, exc: Exception) -> Failure:
        """Map an SDK exception to retry / row / fatal."""

    def _batch_submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        raise JudgeError(f"judge {self.cfg.judge!r} has no batch API; set judge.batch=false")

    def _batch_state(self, batch_id: str) -> Literal["running", "ended", "failed"]:
        raise NotImplementedError

    def _batch_results(self, batch_id: str) -> dict[str, Reply | str]:
        """custom_id -> Reply, or an error message for requests the batch did not complete."""
        raise NotImplementedError

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- retries ----------------------------------------------------------------------------
    def _retrying(
        self, fn: Callable[[], T], what: str, limited: bool = True, gone_ok: bool = False
    ) -> T:
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if limited and self.bucket is not None:
                self.bucket.acquire()
            try:
                return fn()
            except Exception as exc:  # SDK exceptions are classified by the provider
                f = self._classify(exc)
                if f.kind == "fatal" and gone_ok and f.status == 404:
                    raise BatchGone(f.message) from None
                if f.kind == "fatal":
                    raise JudgeError(f"{self.cfg.judge} judge: {what} failed: {f.message}") from None
                if f.kind == "row":
                    raise GaveUp(f.message) from None
                last = f.message
                if attempt < self.cfg.max_retries:
                    delay = backoff_delay(attempt, self.cfg.backoff_base_s,
                                          self.cfg.backoff_max_s, f.retry_after_s)
                    log.debug("%s: %s; retry %d in %.2fs", what, last, attempt + 1, delay)
                    time.sleep(delay)
        raise Exhausted(f"gave up after {self.cfg.max_retries} retries: {last}")

    def _one(self, req: ChatRequest) -> ChatResult:
        if not self.breaker.allow():
            return ChatResult(None, error=f"not sent: the last {self.breaker.failures} requests "
                              "gave up after all retries (API down?); re-run to retry")
        try:
            r = self._retrying(lambda: self._send(req), "request")
        except Exhausted as e:
            self.breaker.record(ok=False)
            return ChatResult(text=None, error=str(e))
        except GaveUp as e:  # this request's own problem (e.g. too long): says nothing of the API
            return ChatResult(text=None, error=str(e))
        self.breaker.record(ok=True)
        return ChatResult(r.text, r.input_tokens, r.output_tokens,
                          self.cost(r.input_tokens, r.output_tokens, batch=False))

    # -- the entry point --------------------------------------------------------------------
    def complete_many(self, reqs: list[ChatRequest]) -> list[ChatResult]:
        """Answer every request: from the cache, else by the API (concurrently, or as one provider
        batch when judge.batch is set). Failed requests come back with `error`, never raise."""
        keys = [self.key(r) for r in reqs]
        found = self.cache.get_many(keys) if self.cache else {}
        done: dict[str, ChatResult] = {
            k: ChatResult(v["text"], v["input_tokens"], v["output_tokens"], v["cost_usd"], True)
            for k, v in found.items()
        }
        todo = {k: r for k, r in zip(keys, reqs, strict=True) if k not in done}  # also dedupes repeats
        if todo:
            fresh = self._run_batch(todo) if self.cfg.batch else self._run_sync(todo)
            done.update(fresh)
        out: list[ChatResult] = []
        seen: set[str] = set()
        for k in keys:
            res = done[k]
            # A repeat of a request in this call reuses its reply: like a cache hit, not paid again.
            out.append(replace(res, cached=True) if k in seen and res.error is None else res)
            seen.add(k)
        return out

    def _remember(self, results: dict[str, ChatResult]) -> None:
        if self.cache is None:
            return
        self.cache.put_many({
            k: {"text": r.text, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                "cost_usd": r.cost_usd}
            for k, r in results.items() if r.error is None
        })

    def _run_sync(self, todo: dict[str, ChatRequest]) -> dict[str, ChatResult]:
        def one(item: tuple[str, ChatRequest]) -> tuple[str, ChatResult]:
            k, req = item
            res = self._one(req)
            self._remember({k: res})  # durable at once: a kill loses only requests in flight
            return k, res

        return dict(self._pool.map(one, todo.items()))

    def _run_batch(self, todo: dict[str, ChatRequest], again: bool = True) -> dict[str, ChatResult]:
        """Submit what no open batch holds yet, wait for every batch involved, collect results.
        Requests whose remembered batch has vanished are submitted anew (once)."""
        holder = self.cache.pending(todo) if self.cache else {}
        new = {k: r for k, r in todo.items() if k not in holder}
        out: dict[str, ChatResult] = {}
        if new:
            try:
                batch_id = self._retrying(lambda: self._batch_submit(list(new.items())),
                                          "batch submit", limited=False)
            except GaveUp as e:
                return {k: ChatResult(None, error=f"batch submit: {e}") for k in todo}
            log.info("%s judge: submitted batch %s with %d requests", self.cfg.judge, batch_id, len(new))
            if self.cache:
                self.cache.add_pending(batch_id, new)
            holder.update(dict.fromkeys(new, batch_id))
        lost: dict[str, ChatRequest] = {}
        for batch_id in sorted(set(holder.values())):
            mine = [k for k, b in holder.items() if b == batch_id]
            got = self._collect(batch_id, mine)
            if got is None:
                log.warning("%s judge: batch %s is gone; resubmitting its %d requests",
                            self.cfg.judge, batch_id, len(mine))
                lost.update({k: todo[k] for k in mine})
            else:
                out.update(got)
        if lost and again:
            out.update(self._run_batch(lost, again=False))
        elif lost:
            out.update({k: ChatResult(None, error="batch vanished twice") for k in lost})
        return out

    def _collect(self, batch_id: str, keys: list[str]) -> dict[str, ChatResult] | None:
        """Wait for a batch and read the results for `keys`; None when the batch is gone."""
        deadline = time.monotonic() + self.cfg.batch_max_wait_s
        try:
            while (state := self._retrying(lambda: self._batch_state(batch_id), "batch poll",
                                           limited=False, gone_ok=True)) == "running":
                if time.monotonic() > deadline:
                    # Left open: a later run collects it instead of paying again.
                    msg = f"batch {batch_id} still running after {self.cfg.batch_max_wait_s:g}s"
                    return {k: ChatResult(None, error=f"{msg}; re-run to collect it") for k in keys}
                time.sleep(self.cfg.batch_poll_s)
            got = (self._retrying(lambda: self._batch_results(batch_id), "batch results",
                                  limited=False, gone_ok=True) if state == "ended" else {})
        except BatchGone:
            if self.cache:
                self.cache.close_batch(batch_id)
            return None
        except GaveUp as e:
            return {k: ChatResult(None, error=f"batch {batch_id}: {e}") for k in keys}
        out: dict[str, ChatResult] = {}
        for k in keys:
            r = got.get(k)
            if isinstance(r, Reply):
                out[k] = ChatResult(r.text, r.input_tokens, r.output_tokens,
                                    self.cost(r.input_tokens, r.output_tokens, batch=True))
            else:
                out[k] = ChatResult(None, error=f"batch {batch_id}: {r or state}")
        self._remember(out)
        if self.cache:  # results are stored; failed requests get resubmitted by a re-run
            self.cache.close_batch(batch_id)
        return out
