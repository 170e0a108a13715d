"""The shadow process: the candidate opened here, each copy run and compared with the primary's
reply, the counts sent back. Started by shadow.ShadowProcess as ``python -m
modelport.rollouts.worker``, 10 nice levels below the server once the candidate is open,
reading frames on stdin and writing frames on stdout:

    frame(("open", {"record": ..., "path": ..., "options": ...}, comparison))   # first
    copy_frame(inputs, {output: primary})                                        # then copies
    # back: ("ready",), ("failed", reason) or ("tally", Tally.to_dict(), copies)

A frame is its length (4 bytes), then "P" and a pickle, or "C" and a copy: a pickled list of
(group, name, dtype, shape, size) followed by the arrays' bytes (a quarter of the time pickling
the arrays takes).
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import time
from time import perf_counter
from typing import Any

import numpy as np

from modelport.rollouts.compare import Comparison
from modelport.rollouts.tally import Tally

log = logging.getLogger("modelport.rollouts")
BATCH = 64  # copies at most between two reports
REPORT_EVERY = 0.05  # seconds at most a copy's counts wait here for more copies
NICENESS = 10  # where the idle policy cannot be had: a tenth of the server's share of a core


def run_copy(runtime: Any, comparison: Comparison, inputs: Any, primary: Any, tally: Tally) -> None:
    """Run one copy on the candidate and count it (and its comparison) into ``tally``."""
    started = perf_counter()
    try:
        outputs = runtime.predict(inputs)
        seconds = perf_counter() - started
        classes, compared = comparison.classes(outputs), comparison.compare(primary, outputs)
    except Exception as exc:  # a failure (or a reply without the output) is evidence
        log.debug("shadow call failed: %s", exc)
        tally.observe("shadow", perf_counter() - started, False)
        return
    tally.observe("shadow", seconds, True, classes)
    tally.compared_rows(*compared)


def frame(message: Any) -> bytes:
    """A control message: its length, "P", its pickle."""
    body = pickle.dumps(message, protocol=5)
    return (len(body) + 1).to_bytes(4, "big") + b"P" + body


def copy_frame(inputs: Any, primary: dict) -> bytes:
    """A copy: its length, "C", a pickled list of (group, name, dtype, shape), then the arrays'
    bytes (a quarter of the time pickling the arrays takes; object arrays are pickled)."""
    meta, buffers = [], []
    for group, arrays in ((0, inputs), (1, primary)):
        for name, value in arrays.items():
            array = np.asarray(value)
            if array.dtype.hasobject:
                data, dtype = pickle.dumps(array, protocol=5), "pickle"
            else:
                data, dtype = array.tobytes(), array.dtype.str
            meta.append((group, name, dtype, array.shape, len(data)))
            buffers.append(data)
    head = pickle.dumps(meta, protocol=5)
    size = 1 + 4 + len(head) + sum(len(b) for b in buffers)
    return b"".join((size.to_bytes(4, "big"), b"C", len(head).to_bytes(4, "big"), head, *buffers))


def decode(body: memoryview) -> Any:
    if body[0] == ord("P"):
        return pickle.loads(body[1:])
    size = int.from_bytes(body[1:5], "big")
    at = 5 + size
    groups: tuple[dict, dict] = ({}, {})
    for group, name, dtype, shape, length in pickle.loads(body[5:at]):
        data = body[at : at + length]
        at += length
        if dtype == "pickle":
            groups[group][name] = pickle.loads(data)
        else:
            groups[group][name] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return ("copy", *groups)


class _Frames:
    """Length-prefixed pickles read from a file descriptor, blocking."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def _fill(self, size: int) -> bool:
        while len(self.buffer) < size:
            chunk = os.read(self.fd, max(1 << 16, size - len(self.buffer)))
            if not chunk:
                return False
            self.buffer += chunk
        return True

    def next(self) -> Any:
        if not self._fill(4):
            return None
        size = 4 + int.from_bytes(self.buffer[:4], "big")
        if not self._fill(size):
            return None
        message = decode(memoryview(bytes(self.buffer[4:size])))
        del self.buffer[:size]
        return message

    def pending(self, wait: float = 0.0) -> bool:
        """Whether more is there to read, or arrives within ``wait`` seconds."""
        return bool(self.buffer) or bool(select.select([self.fd], [], [], wait)[0])


def main() -> None:
    """The shadow process: open the candidate, then run and compare copies until end of input."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never between the frames
    frames = _Frames(0)
    first = frames.next()
    if first is None:
        return
    _, spec, comparison = first
    try:
        from modelport.serving.loaded import warm_up
        from modelport.serving.models import open_runtime

        runtime = open_runtime(spec["record"], spec["path"], spec["options"])
        warm_up(runtime)
    except Exception as exc:
        out.write(frame(("failed", f"the shadow process could not open the candidate: {exc}")))
        return
    yield_cpu()  # after the start-up: on a busy host, at a low priority it took seconds
    out.write(frame(("ready",)))
    _copies(frames, out, runtime, comparison)
    runtime.close()


def yield_cpu() -> str:
    """Put this process's threads in the idle scheduling class: the kernel preempts a copy the
    moment a thread of the server (or anything else) wants its core, so copies run on cores
    nobody else wants; a nice level where that class is not available. Returns which."""
    tasks = (
        [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else []
    )
    idle = hasattr(os, "SCHED_IDLE")
    for tid in [0, *tasks]:  # 0: this thread, the one running copies
        try:
            if idle:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            else:
                os.setpriority(os.PRIO_PROCESS, tid, NICENESS)
        except ProcessLookupError:
            continue  # a thread that ended meanwhile
        except OSError as exc:
            if tid or not idle:
                continue
            log.debug("no idle scheduling class: %s", exc)
            idle = False
            os.setpriority(os.PRIO_PROCESS, 0, NICENESS)
    return "idle" if idle else f"nice {NICENESS}"


def _copies(frames: _Frames, out: Any, runtime: Any, comparison: Comparison) -> None:
    """Run copies until end of input; report their counts once ``REPORT_EVERY`` has passed
    since the first unreported one, after ``BATCH`` copies, or when no copy follows."""
    tally, copies, due = Tally(), 0, 0.0
    while True:
        if copies:
            now = time.monotonic()
            if copies >= BATCH or now >= due or not frames.pending(due - now):
                out.write(frame(("tally", tally.to_dict(), copies)))
                tally, copies = Tally(), 0
        message = frames.next()
        if message is None:
            return
        if not copies:
            due = time.monotonic() + REPORT_EVERY
        run_copy(runtime, comparison, message[1], message[2], tally)
        copies += 1


if __name__ == "__main__":
    main()
