"""Relaying a streaming deployment-handle call from one deployment to the next."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


async def relay(gen: Any) -> AsyncIterator[Any]:
    """The items of a streaming handle call (a DeploymentResponseGenerator). A consumer that
    stops early (client gone, request cancelled, aclose) cancels the call, so the replica
    behind it stops decoding. Serve's actor transport cancels downstream calls on its own; its
    gRPC transport (the fast path) cancels only the call it is told to, so each hop must."""
    finished = False
    try:
        async for item in gen:
            yield item
        finished = True
    except Exception:
        finished = True  # the call failed: nothing left to cancel
        raise
    finally:
        if not finished:
            gen.cancel()
