"""A bounded, paced load generator: threads with their own HTTP client, counting every reply.

with Load(["http://127.0.0.1:8080"], rate=80) as load:
    ...                                   # the load runs meanwhile
load.sent, load.failed, load.rate         # failed: any reply but 200, or a transport error
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import numpy as np

from tests.rollouts.conftest import inputs


class Load:
    def __init__(self, bases: list[str], rate: float = 80.0, threads: int = 4,
                 limit_seconds: float = 120.0, keyed: bool = False) -> None:  # fmt: skip
        self.bases = bases
        self.interval = threads / rate
        self.threads = threads
        self.deadline = time.monotonic() + limit_seconds  # bounded even if a test forgets stop
        self.keyed = keyed
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]  # fmt: skip

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        self.elapsed = time.monotonic() - self.started

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.sent - self.outcomes["200"]

    @property
    def rate(self) -> float:
        return self.sent / max(self.elapsed, 1e-9)

    def _run(self, index: int) -> None:
        rows = inputs(500, seed=100 + index)
        base = self.bases[index % len(self.bases)]
        with httpx.Client(base_url=base, timeout=30) as client:
            n = 0
            next_at = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                row = rows[n % len(rows)]
                headers = {"X-Modelport-Key": f"user-{index}-{n % 50}"} if self.keyed else {}
                outcome = self._one(client, row, headers)
                with self._lock:
                    self.outcomes[outcome] += 1
                n += 1
                next_at += self.interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    def _one(self, client: httpx.Client, row: np.ndarray, headers: dict) -> str:
        payload = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                               "data": row.tolist()}]}  # fmt: skip
        try:
            reply = client.post("/v2/models/digits/infer", json=payload, headers=headers)
        except httpx.HTTPError as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            return "transport"
        if reply.status_code != 200:
            with self._lock:
                self.errors.append(f"{reply.status_code}: {reply.text[:200]}")
        return str(reply.status_code)
