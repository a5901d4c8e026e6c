"""Driving a blocking token iterator from async code without blocking the replica's event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Yield what `make()` yields, running it in a worker thread.

    One thread drives the whole iterator (model libraries and their locks are thread-bound), and
    a consumer that stops early (client gone, request cancelled) closes it there, so the model's
    lock is released and decoding stops within one token.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        it = make()
        try:
            for item in it:
                put(item)
                if stop.is_set():
                    break
        except BaseException as e:  # re-raised in the consumer, with its type
            put(_Failure(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            put(_END)

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        await asyncio.shield(worker)  # the thread exits at its next token


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error
