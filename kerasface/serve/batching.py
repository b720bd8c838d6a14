"""A small asyncio batching queue: items of concurrent requests are gathered for up to
``max_wait_s`` (or ``max_items``) and handed to one call of a batch function, run on the
service's worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Batcher:
    """``await submit(items)`` -> ``run(all items gathered)`` sliced back to this request's items."""

    def __init__(self, run: Callable[[list], list], executor, max_items: int = 32, max_wait_s: float = 0.005):
        self.run, self.executor = run, executor
        self.max_items, self.max_wait_s = max_items, max_wait_s
        self.queue: asyncio.Queue | None = None
        self.calls = self.items = 0
        self._task = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, items: list) -> list:
        if not items:
            return []
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((items, future))
        return await future

    async def _gather(self) -> list:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        count, deadline = len(batch[0][0]), loop.time() + self.max_wait_s
        while count < self.max_items:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
            count += len(batch[-1][0])
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            flat = [item for items, _ in batch for item in items]
            try:
                results = await loop.run_in_executor(self.executor, self.run, flat)
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.calls, self.items = self.calls + 1, self.items + len(flat)
            start = 0
            for items, future in batch:
                if not future.done():
                    future.set_result(results[start:start + len(items)])
                start += len(items)
