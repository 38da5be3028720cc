"""Optional server-side micro-batching: concurrent requests share one model call.

Each request's rows join a queue; a collector task takes the first waiting request, then keeps
adding requests for up to ``wait_ms`` or until ``max_batch`` rows are gathered, runs the model
once on the concatenation in a worker thread (so the event loop keeps reading new requests
meanwhile) and hands each request its slice. Whether it pays off depends on the model and the
load; ``bench/serve.py`` measures it rather than assuming it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kiln.serve.backends import Array

Pending = tuple[Array, "asyncio.Future[Array]"]


class MicroBatcher:
    """Groups ``submit`` calls into batches for ``predict``; ``on_batch`` sees each batch size."""

    def __init__(self, predict: Callable[[Array], Array], max_batch: int, wait_ms: float,
                 on_batch: Callable[[int], None]) -> None:
        self._predict = predict
        self._max_batch = max_batch
        self._wait = wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiln-batch")
        self._carry: Pending | None = None  # a request that did not fit the previous batch

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop after the batch in progress; requests still queued get an error (none are left
        after a graceful shutdown, which waits for in-flight requests first)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = [self._carry] if self._carry is not None else []
        self._carry = None
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for _, future in left:
            if not future.done():
                future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, rows: Array) -> Array:
        future: asyncio.Future[Array] = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [self._carry or await self._queue.get()]
            self._carry = None
            rows = len(batch[0][0])
            deadline = loop.time() + self._wait
            while rows < self._max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                if rows + len(item[0]) > self._max_batch:
                    self._carry = item
                    break
                batch.append(item)
                rows += len(item[0])
            await self._execute(batch, rows)

    async def _execute(self, batch: list[Pending], rows: int) -> None:
        inputs = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
        self._on_batch(rows)
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, inputs)
        except Exception as exc:  # each waiting request answers 500 with its own request id
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for item, future in batch:
            end = start + len(item)
            if not future.done():  # a client that went away cancelled its future
                future.set_result(outputs[start:end])
            start = end
