"""Shadow copies off the event loop: in a worker process (the default) or a worker thread.

    runner = ShadowProcess(spec, comparison, merge=board.merge, limit=256)
    runner.offer(inputs, outputs)     # False when ``limit`` copies are out already: a drop
    await runner.drained()            # every copy offered so far is compared and merged
    await runner.close()

The process (worker.py; once the candidate is open, in the idle scheduling class) opens the
candidate from the same artifact with the same runtime options, runs each copy, compares its
reply with the primary's and sends back the counts (a Tally) in batches. The event loop's share
of a copy is its arrays' bytes, written to the pipe with the others of ``WRITE_EVERY`` seconds,
and merging the counts. A runner whose process cannot open the candidate or dies counts the
copies it had out as shadow errors and reports ``failed``; the board then runs copies on the
loop, between requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelport.rollouts.compare import Comparison
from modelport.rollouts.tally import Tally
from modelport.rollouts.worker import copy_frame, decode, frame, run_copy

log = logging.getLogger("modelport.rollouts")
WRITE_EVERY = 0.02  # seconds copies gather before one write: a pipe write per copy costs more


class _Runner:
    """What both runners share: the count of copies out, and waiting for none."""

    def __init__(self, comparison: Comparison, merge: Callable[[Tally], None], limit: int) -> None:
        self.comparison = comparison
        self.limit = limit
        self.out = 0  # copies offered and not yet merged
        self.failed: str | None = None
        self.ready = asyncio.Event()  # set once copies run (or the runner failed)
        self._merge = merge
        self._idle = asyncio.Event()
        self._idle.set()

    def _taken(self) -> bool:
        if self.out >= self.limit:
            return False
        self.out += 1
        self._idle.clear()
        return True

    def _merged(self, tally: Tally, copies: int) -> None:
        self._merge(tally)
        self.out -= copies
        if self.out <= 0:
            self.out = 0
            self._idle.set()

    async def drained(self) -> None:
        await self._idle.wait()


class ShadowThread(_Runner):
    """Copies on one worker thread, on the candidate loaded in this process (ONNX Runtime
    releases the GIL while it computes; the Python around each call still takes it)."""

    def __init__(self, runtime: Any, comparison: Comparison, merge: Callable[[Tally], None],
                 limit: int) -> None:  # fmt: skip
        super().__init__(comparison, merge, limit)
        self._runtime = runtime
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="modelport-shadow")
        self.ready.set()

    def offer(self, inputs: Any, primary: Any) -> bool:
        if not self._taken():
            return False
        future = self._pool.submit(self._copy, inputs, primary)
        loop = asyncio.get_running_loop()

        def done(future: Any) -> None:
            if not future.cancelled() and not loop.is_closed():
                loop.call_soon_threadsafe(self._merged, future.result(), 1)

        future.add_done_callback(done)
        return True

    def _copy(self, inputs: Any, primary: Any) -> Tally:
        tally = Tally()
        run_copy(self._runtime, self.comparison, inputs, primary, tally)
        return tally

    async def close(self) -> None:
        """Drop the copies not started; wait for the one running (it uses the candidate)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)


class ShadowProcess(_Runner):
    """Copies in a worker process that opens the candidate itself from ``spec()``: a dict with
    the candidate's ``record``, artifact ``path`` and runtime ``options`` (read in a thread)."""

    def __init__(self, spec: Callable[[], dict], comparison: Comparison,
                 merge: Callable[[Tally], None], limit: int) -> None:  # fmt: skip
        super().__init__(comparison, merge, limit)
        self._backlog: list[bytes] = []  # copies not yet written (or before the process started)
        self._flushing: asyncio.TimerHandle | None = None
        self._stdin: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._run(spec), name="modelport-shadow"
        )

    def offer(self, inputs: Any, primary: Any) -> bool:
        if self.failed is not None or not self._taken():
            return False
        self._backlog.append(
            copy_frame(inputs, {self.comparison.output: primary[self.comparison.output]})
        )
        if self._stdin is not None and self._flushing is None:
            self._flushing = asyncio.get_running_loop().call_later(WRITE_EVERY, self._flush)
        return True

    def _flush(self) -> None:
        self._flushing = None
        if self._stdin is not None and self._backlog:
            self._stdin.write(b"".join(self._backlog))
            self._backlog.clear()

    async def _run(self, spec: Callable[[], dict]) -> None:
        try:
            opened = await asyncio.get_running_loop().run_in_executor(None, spec)
            self._proc = proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "modelport.rollouts.worker", env=_child_env(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(frame(("open", opened, self.comparison)))
            self._stdin = proc.stdin
            self._flush()
            while True:
                message = await _read(proc.stdout)
                if message is None:
                    raise RuntimeError(f"the shadow process ended (exit code {await proc.wait()})")
                if message[0] == "failed":
                    raise RuntimeError(message[1])
                if message[0] == "ready":
                    self.ready.set()
                    continue
                self._merged(Tally.from_dict(message[1]), message[2])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(str(exc))

    def _fail(self, reason: str) -> None:
        log.warning("shadow copies move onto the event loop: %s", reason)
        self.failed = reason
        lost = Tally()  # the copies out never came back: the candidate's errors
        for _ in range(self.out):
            lost.observe("shadow", 0.0, False)
        self._backlog.clear()
        self._merged(lost, self.out)
        self.ready.set()

    async def close(self) -> None:
        self._task.cancel()
        if self._flushing is not None:
            self._flushing.cancel()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.kill()  # nothing it still has to count is wanted: the board is gone
        await proc.wait()


async def _read(stream: asyncio.StreamReader) -> Any:
    try:
        size = int.from_bytes(await stream.readexactly(4), "big")
        return decode(memoryview(await stream.readexactly(size)))
    except asyncio.IncompleteReadError:
        return None


def _child_env() -> dict[str, str]:
    """This environment, with the folder this modelport is imported from first on the path."""
    here = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}
