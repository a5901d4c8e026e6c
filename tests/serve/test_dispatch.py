"""`relay`: a streaming handle call abandoned part-way is cancelled; one that ends or fails is not
(Serve's gRPC transport stops a downstream replica only when told to)."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from cogumi_ray.serve.dispatch import relay


class Call:
    """The two things relay uses of a DeploymentResponseGenerator: async iteration and cancel."""

    def __init__(self, items: list[int], fail_at: int | None = None, delay: float = 0.0) -> None:
        self.items, self.fail_at, self.delay, self.cancels = items, fail_at, delay, 0

    async def _gen(self):
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("replica failed")
            await asyncio.sleep(self.delay)
            yield item

    def __aiter__(self):
        return self._gen()

    def cancel(self) -> None:
        self.cancels += 1


async def _take(call: Call, n: int) -> list[int]:
    out = []
    async with aclosing(relay(call)) as items:
        async for item in items:
            out.append(item)
            if len(out) == n:
                break
    return out


def test_abandoned_stream_is_cancelled_once():
    call = Call(list(range(10)))
    assert asyncio.run(_take(call, 3)) == [0, 1, 2]
    assert call.cancels == 1


def test_finished_stream_is_not_cancelled():
    call = Call([1, 2])
    assert asyncio.run(_take(call, 99)) == [1, 2]
    assert call.cancels == 0


def test_failed_stream_raises_and_is_not_cancelled():
    call = Call([1, 2, 3], fail_at=1)
    with pytest.raises(RuntimeError, match="replica failed"):
        asyncio.run(_take(call, 99))
    assert call.cancels == 0


def test_consumer_task_cancelled_mid_wait_cancels_the_call():
    call = Call(list(range(1000)), delay=0.01)  # still streaming when the task is cancelled

    async def main() -> None:
        task = asyncio.create_task(_take(call, 10_000))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert call.cancels == 1
