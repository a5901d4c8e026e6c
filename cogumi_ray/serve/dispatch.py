"""Calls from one deployment to the next: the Generator call a decision makes, the counter of
decisions, and relaying a streaming call. The Router uses them, and so does the Ingress for a
request that names its option (`serve.direct_forced`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cogumi_ray.serve.protocol import BASE, Decision


def on_replica_transport(handle: Any) -> Any:
    """`handle` on the transport of this process's Serve: gRPC on the fast path
    (RAY_SERVE_USE_GRPC_BY_DEFAULT=1), Ray actor calls otherwise.

    A handle bound into the graph keeps the transport of the process that built the app, read
    when that process imported Ray Serve; a driver that imported it before `init_ray` exported
    the fast-path variables (or a `serve run` from a shell without them) would send every hop
    between replicas as an actor call. On 2 cores that cost a forced request 4-7 ms p50
    (benchmarks/serve.py: 19.5 -> 12.8 ms added)."""
    from ray.serve._private.constants import RAY_SERVE_USE_GRPC_BY_DEFAULT

    return handle.options(_by_reference=not RAY_SERVE_USE_GRPC_BY_DEFAULT)


def to_generator(generator: Any, decision: Decision, stream: bool = False) -> Any:
    """The Generator handle that answers `decision`: the base on any replica, a modifier by
    Serve's multiplexed model id (a replica that has it loaded is preferred)."""
    if decision.option == BASE:
        return generator.options(stream=stream)
    return generator.options(multiplexed_model_id=decision.option, stream=stream)


def routed_counter() -> Any:
    """Which option answers how often, in the Ray dashboard / Prometheus (made in a replica)."""
    from ray.serve import metrics

    return metrics.Counter("cogumi_routed_requests", tag_keys=("option", "stream"),
                           description="Requests answered, by option (base or modifier).")


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
