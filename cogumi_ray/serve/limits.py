"""What a request must pass before any model work: its key, its rate, its size.

Pure Python (no Ray, no HTTP framework), so the rules are unit-tested directly; the ingress calls
them and renders the ServeError they raise.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from cogumi_ray.serve.config import LimitsConfig, RateLimitConfig
from cogumi_ray.serve.errors import ServeError, bad_request


class TokenBucket:
    """`capacity` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.stamp = now

    def take(self, now: float) -> float:
        """Spend one token: 0.0 if there was one, else the seconds until there will be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per key, least recently used buckets dropped past `max_keys`.

    Buckets live in one ingress replica: with N ingress replicas a key gets up to N times the rate.
    """

    def __init__(self, cfg: RateLimitConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> None:
        """Raise ServeError(429) with Retry-After when `key` is over its rate."""
        rpm = self.cfg.requests_per_minute
        if rpm is None:
            return
        now = self.clock()
        bucket = self._buckets.pop(key, None) or TokenBucket(rpm / 60.0, self.cfg.burst, now)
        self._buckets[key] = bucket  # most recently used last
        while len(self._buckets) > self.cfg.max_keys:
            self._buckets.popitem(last=False)
        wait = bucket.take(now)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ServeError(
                429, f"Rate limit reached: {rpm:g} requests per minute (burst {self.cfg.burst}); "
                f"retry in {retry} s.", type="rate_limit_error", code="rate_limit_exceeded",
                headers={"retry-after": str(retry)},
            )


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Authenticator:
    """Bearer keys, held as SHA-256 digests: the keys themselves never travel to the replicas.

    With no keys configured every request is let in.
    """

    def __init__(self, digests: frozenset[str]) -> None:
        self.digests = digests

    @classmethod
    def from_keys(cls, keys: frozenset[str]) -> Authenticator:
        return cls(frozenset(key_digest(k) for k in keys))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def check(self, authorization: str | None) -> str | None:
        """The caller's key digest (None when auth is off); ServeError(401) if missing or wrong."""
        if not self.digests:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ServeError(401, "Missing API key: send 'Authorization: Bearer <key>'.",
                             type="authentication_error", code="missing_api_key")
        digest = key_digest(token)
        # compare against every key in constant time: no early exit that tells which matched
        matches = [hmac.compare_digest(digest, d) for d in self.digests]
        if not any(matches):
            raise ServeError(401, "Incorrect API key provided.", type="authentication_error",
                             code="invalid_api_key")
        return digest


def check_body_size(n_bytes: int, limits: LimitsConfig) -> None:
    if n_bytes > limits.max_body_bytes:
        raise ServeError(413, f"Request body is {n_bytes} bytes; the limit is "
                         f"{limits.max_body_bytes}.", code="request_too_large")


def resolve_max_tokens(requested: int | None, limits: LimitsConfig) -> int:
    if requested is None:
        return limits.default_max_tokens
    if requested > limits.max_tokens:
        raise bad_request(f"max_tokens is {requested}; this server allows at most "
                          f"{limits.max_tokens}.", param="max_tokens")
    return requested


def check_n(n: int, limits: LimitsConfig) -> None:
    if n > limits.max_n:
        raise bad_request(f"n is {n}; this server allows at most {limits.max_n}.", param="n")


def check_prompt_chars(n_chars: int, limits: LimitsConfig, param: str) -> None:
    if n_chars > limits.max_prompt_chars:
        raise bad_request(f"The prompt is {n_chars} characters; the limit is "
                          f"{limits.max_prompt_chars}.", code="context_length_exceeded", param=param)
