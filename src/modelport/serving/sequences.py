"""Sequences submitted together (prompts x n choices), their token events gathered on the loop.

    run = Run(engine, prompts, n=2, params=lambda choice: SamplingParams(seed=choice))
    async for index, event in run.events():     # index = prompt * n + choice
        ...
    run.cancel()                                 # every sequence, freed within one step
    record(series, run, n_prompt, completion)    # time to first token, tokens, per token

The engine calls back on its decode thread; events cross to the event loop in one queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelport.errors import ModelportError
from modelport.generation.base import SamplingParams, TokenEvent


class Run:
    def __init__(
        self,
        engine: Any,
        prompts: list[list[int]],
        n: int,
        params: Callable[[int], SamplingParams],
    ) -> None:
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()
        self.handles = []
        self.started = time.perf_counter()
        self.first: float | None = None
        try:
            for p, prompt in enumerate(prompts):
                for c in range(n):
                    index = p * n + c

                    def put(event: TokenEvent, index: int = index) -> None:
                        loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

                    self.handles.append(engine.submit(prompt, params(c), put))
        except ModelportError:
            self.cancel()
            raise

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    async def events(self) -> AsyncIterator[tuple[int, TokenEvent]]:
        open_ = len(self.handles)
        while open_:
            index, event = await self.queue.get()
            if self.first is None and event.token is not None:
                self.first = time.perf_counter()
            if event.finish is not None:
                open_ -= 1
            yield index, event


def record(series: Any, run: Run, n_prompt: int, completion: int) -> None:
    end = time.perf_counter()
    first = run.first or end
    series.first_token(first - run.started)
    series.finished(n_prompt, completion, end - run.started, end - first)
