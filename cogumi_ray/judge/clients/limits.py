"""Pacing for API clients: exponential backoff with jitter, a token-bucket rate limit, and a
circuit breaker that stops hammering an API that is down."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff with equal jitter (half fixed, half random, so delays still grow while
    concurrent actors spread out); a server's Retry-After is honoured as a lower bound."""
    cap = min(max_s, base_s * (2**attempt))
    delay = cap / 2 + random.uniform(0, cap / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay


class TokenBucket:
    """Thread-safe request-rate limiter: `rate` tokens per second, bursts up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self._clock, self._sleep = clock, sleep
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)


class CircuitBreaker:
    """After `threshold` consecutive requests gave up (retries exhausted), stop sending for
    `cooldown_s`: the rest fail at once (unjudged, retried by a re-run) instead of each spending
    minutes in backoff against an API that is down. After the cool-down one request probes; a
    success closes the circuit. threshold=0 disables it."""

    def __init__(self, threshold: int, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.cooldown_s, self._clock = threshold, cooldown_s, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at >= self.cooldown_s:
                self._opened_at = self._clock()  # let this one probe; others wait another round
                return True
            return False

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures, self._opened_at = 0, None
                return
            self._failures += 1
            if self.threshold and self._failures >= self.threshold:
                self._opened_at = self._clock()

    @property
    def failures(self) -> int:
        return self._failures
