"""Load for server cost benchmarks: fixed-rate (open-loop) requests, interleaved rounds on
servers kept running, each server's CPU time per request, and paired comparisons with a
confidence interval and a verdict.

    servers = {"off": Server(proc_a.pid, url_a), "on": Server(proc_b.pid, url_b)}
    closed = interleave(servers, lambda s: run_wrk(wrk, s.url, script, 8, 2), blocks=5)
    rate = 0.6 * statistics.median(r["rps"] for r in flatten(closed["off"]))
    paced = interleave(servers, lambda s: fixed_rate(s.url, body, rate, 3.0), blocks=5)
    cost = compare(closed, "off", "on", throughput)       # a Comparison: median, low, high
    cost.verdict(at_most=0.95, lower_is_worse=True)       # "met", "NOT met" or "not settled"

A block runs every server once in order and again in reverse (A B B A, A B C C B A): a drift
of the machine's load that is linear over a block falls on every server alike, and each
block gives one paired figure per server against the base (a ratio, or a difference). The
figures of the blocks are summarised by their median and a distribution-free confidence
interval for it (order statistics of the blocks, binomial coverage): a target is met when the
whole interval is on its side, not met when the whole interval is past it, otherwise not
settled. ``fixed_rate`` sends request i at t0 + i / rate whatever the replies (a pool of
connections, each taking the next due request when it is free) and times each reply from its
due time, so a stalled server is charged for every request it delayed (no coordinated omission).
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A server under load: its process (CPU read with its descendants) and the URL loaded."""

    pid: int
    url: str
    extra: dict = field(default_factory=dict)  # whatever the caller's load function needs


def cpu_seconds(pid: int, task: int | None = None, children: bool = False) -> float:
    """User + system CPU time of a process (or one of its threads; or with ``children`` the
    process and its live descendants, such as worker processes) so far, from /proc."""
    pids = [pid, *descendants(pid)] if children else [pid]
    total = 0
    for one in pids:
        stat = f"/proc/{one}/stat" if task is None else f"/proc/{one}/task/{task}/stat"
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a child that ended meanwhile
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def descendants(pid: int) -> list[int]:
    """The live processes below ``pid`` (parents read from /proc/N/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def fixed_rate(url: str, body: bytes, rate: float, seconds: float, *, headers: dict | None = None,
               connections: int = 8, timeout: float = 5.0) -> dict:  # fmt: skip
    """POST ``body`` to ``url`` at ``rate`` requests a second for ``seconds`` (open loop).

    Latency is measured from each request's due time. The run is bounded: ``rate * seconds``
    requests at most, and whatever is not answered ``timeout`` s after the last due time is
    counted as a timeout. Returns rps (replies a second), requests, errors (status not 200),
    timeouts, p50_ms, p99_ms, latencies_ms (an array) and the rate asked for."""
    parts = urllib.parse.urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}",
             f"Content-Length: {len(body)}", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]  # fmt: skip
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    total = max(1, round(rate * seconds))
    latencies = np.full(total, np.nan)
    statuses = np.zeros(total, np.int16)
    due_index = itertools.count()  # next() on it is atomic: each request is taken once
    sockets = [socket.create_connection((parts.hostname, parts.port), timeout) for _ in
               range(connections)]  # fmt: skip
    start = time.perf_counter() + 0.05
    deadline = start + seconds + timeout

    def worker(sock: socket.socket) -> None:
        for i in due_index:
            if i >= total:
                return
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if time.perf_counter() > deadline:
                return
            try:
                sock.settimeout(max(deadline - time.perf_counter(), 0.001))
                sock.sendall(request)
                statuses[i] = _reply(sock)
            except OSError:
                statuses[i] = -1
                sock.close()
                sock = socket.create_connection((parts.hostname, parts.port), timeout)
                continue
            latencies[i] = (time.perf_counter() - due) * 1e3

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * timeout)
    elapsed = time.perf_counter() - start
    for sock in sockets:
        sock.close()
    answered = latencies[statuses == 200]
    return {"rps": len(answered) / max(elapsed, 1e-9), "requests": int((statuses != 0).sum()),
            "errors": int(((statuses != 200) & (statuses > 0)).sum()),
            "timeouts": int((statuses <= 0).sum()), "rate": rate, "seconds": elapsed,
            "p50_ms": float(np.percentile(answered, 50)) if len(answered) else math.nan,
            "p99_ms": float(np.percentile(answered, 99)) if len(answered) else math.nan,
            "latencies_ms": answered}  # fmt: skip


def _reply(sock: socket.socket) -> int:
    """Read one HTTP/1.1 reply with a Content-Length; its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        rest += chunk
    return int(head.split(b" ", 2)[1])


def interleave(servers: dict[str, Server], run: Callable[[Server], dict], blocks: int,
               log: Callable[[str], None] = print) -> dict[str, list[list[dict]]]:  # fmt: skip
    """``blocks`` blocks, each running ``run`` on every server in order, then in reverse.

    Each result gains cpu_us (the server's CPU time, descendants included, per request),
    loop_us (its main thread's) and rss_mib (after the round). Returns, per server, a list of
    blocks of its two results."""
    names = list(servers)
    results: dict[str, list[list[dict]]] = {name: [] for name in names}
    for block in range(blocks):
        for name in names:
            results[name].append([])
        for name in names + names[::-1]:
            server = servers[name]
            cpu = cpu_seconds(server.pid, children=True)
            loop = cpu_seconds(server.pid, task=server.pid)
            result = run(server)
            requests = max(result["requests"], 1)
            result["cpu_us"] = 1e6 * (cpu_seconds(server.pid, children=True) - cpu) / requests
            result["loop_us"] = 1e6 * (cpu_seconds(server.pid, task=server.pid) - loop) / requests
            result["rss_mib"] = rss_mib(server.pid)
            results[name][block].append(result)
            log(
                f"block {block + 1} {name}: {result['rps']:.0f} req/s, p99 "
                f"{result['p99_ms']:.2f} ms, {result['cpu_us']:.0f} us CPU a request, errors "
                f"{result['errors'] + result['timeouts']}, load average {os.getloadavg()[0]:.1f}"
            )
    return results


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def flatten(blocks: list[list[dict]]) -> list[dict]:
    return [result for block in blocks for result in block]


# -- what a block's two rounds of one server measured -----------------------------------------


def throughput(runs: list[dict]) -> float:
    return sum(r["rps"] * r["seconds"] for r in runs) / sum(r["seconds"] for r in runs)


def cpu_per_request(runs: list[dict]) -> float:
    return sum(r["cpu_us"] * r["requests"] for r in runs) / sum(r["requests"] for r in runs)


def p99(runs: list[dict]) -> float:
    """The 99th percentile of the rounds' latencies pooled (the mean of their p99 where the
    load generator gave no latencies, as ``wrk``)."""
    if all("latencies_ms" in r for r in runs):
        return float(np.percentile(np.concatenate([r["latencies_ms"] for r in runs]), 99))
    return statistics.fmean(r["p99_ms"] for r in runs)


@dataclass
class Comparison:
    """Paired figures of the blocks (ratios, or differences) and their median's interval."""

    values: list[float]
    median: float
    low: float
    high: float
    confidence: float

    def verdict(self, at_most: float | None = None, at_least: float | None = None) -> str:
        """Met when the interval is within the bound, NOT met when it is all past it; not
        settled when it straddles the bound, or covers the median with under 90% (too few
        blocks)."""
        if self.confidence < 0.9:
            return "not settled"
        if at_most is not None:
            inside, outside = self.high <= at_most, self.low > at_most
        else:
            inside, outside = self.low >= at_least, self.high < at_least
        return "met" if inside else "NOT met" if outside else "not settled"


def compare(results: dict[str, list[list[dict]]], base: str, name: str,
            metric: Callable[[list[dict]], float],
            difference: bool = False) -> Comparison:  # fmt: skip
    """``metric`` of ``name`` over ``base`` in each block (a ratio, or a difference)."""
    values = []
    for mine, theirs in zip(results[name], results[base], strict=True):
        a, b = metric(mine), metric(theirs)
        values.append(a - b if difference else a / b)
    low, high, confidence = median_interval(values)
    return Comparison(values, statistics.median(values), low, high, confidence)


def median_interval(values: list[float], tail: float = 0.05) -> tuple[float, float, float]:
    """A distribution-free interval for the median: the k-th smallest and largest values, k
    as large as keeps each tail's binomial probability within ``tail`` (or 1 with too few
    values); returns (low, high, its coverage)."""
    ordered, n = sorted(values), len(values)
    below = [math.comb(n, i) / 2**n for i in range(n + 1)]
    k = 1
    while k < n // 2 and sum(below[: k + 1]) <= tail:
        k += 1
    return ordered[k - 1], ordered[n - k], 1 - 2 * sum(below[:k])


# -- tables ------------------------------------------------------------------------------------


def judged(what: str, results: dict[str, list[list[dict]]], base: str, name: str,
           metric: Callable[[list[dict]], float], *, difference: bool = False,
           at_most: float | None = None, at_least: float | None = None,
           target: str = "-") -> list[str]:  # fmt: skip
    """One row of a verdict table: ``metric`` of ``name`` against ``base``, paired by block."""
    cost = compare(results, base, name, metric, difference)
    mine = statistics.median(metric(block) for block in results[name])
    theirs = statistics.median(metric(block) for block in results[base])

    def show(value: float) -> str:
        return f"{value:+.2f}" if difference else f"{100 * (value - 1):+.1f}%"

    bounded = at_most is not None or at_least is not None
    verdict = cost.verdict(at_most, at_least) if bounded else "-"
    return [what, name, f"{theirs:,.2f}", f"{mine:,.2f}", show(cost.median),
            f"{show(cost.low)} to {show(cost.high)} ({100 * cost.confidence:.0f}%)", target,
            verdict]  # fmt: skip


JUDGED_HEAD = ["measure", "configuration", "base", "this", "paired median",
               "interval of the median", "target", "verdict"]  # fmt: skip


def rounds_rows(results: dict[str, list[list[dict]]], load: str) -> list[list[str]]:
    """Per server, the medians of its rounds: req/s, p99, CPU a request (all, main thread,
    other threads and processes), RSS growth over the rounds, errors."""
    rows = []
    for name, blocks in results.items():
        runs = flatten(blocks)

        def median(key: str, runs: list[dict] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        rows.append([name, load, f"{median('rps'):,.0f}", f"{median('p99_ms'):.2f}",
                     f"{median('cpu_us'):.0f}", f"{median('loop_us'):.0f}",
                     f"{statistics.median(r['cpu_us'] - r['loop_us'] for r in runs):.1f}",
                     f"{runs[-1]['rss_mib'] - runs[0]['rss_mib']:+.1f}",
                     str(sum(r["errors"] + r["timeouts"] for r in runs))])  # fmt: skip
    return rows


ROUNDS_HEAD = ["configuration", "load", "req/s", "p99 ms", "CPU us/req", "main thread us/req",
               "other threads and processes us/req", "RSS growth MiB", "errors"]  # fmt: skip


def add_options(parser: object, rate: bool = True) -> None:
    """The block options every cost benchmark takes (argparse), with ``--rate-fraction``."""
    parser.add_argument("--blocks", type=int, default=5, help="closed-loop blocks")
    parser.add_argument("--round-seconds", type=float, default=2.0, help="a closed-loop round")
    parser.add_argument("--paced-blocks", type=int, default=5, help="fixed-rate blocks")
    parser.add_argument("--paced-seconds", type=float, default=3.0, help="a fixed-rate round")
    if rate:
        parser.add_argument("--rate-fraction", type=float, default=0.6,
                            help="the fixed rate, a fraction of the closed loop's req/s of the "
                            "base")  # fmt: skip
