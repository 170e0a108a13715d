"""Real-time serving, side by side: modelport vs Seldon MLServer 1.7.1 vs raw onnxruntime.

    .venv/bin/python benchmarks/serving.py [--duration 10] [--markdown]

Same ONNX model (the tutorial MLP 784 -> 128 -> 64 -> 10, built here), same load generator
(`wrk` on loopback with a Lua script that POSTs one KServe V2 JSON request with one sample),
concurrency 1, 8 and 64, one server process each, adaptive batching off and on for both servers.
MLServer runs in its own virtualenv (benchmarks/.venv-mlserver, created on first use, with
uvloop<0.22 because MLServer 1.7.1 crashes at start with newer uvloop) in its fastest
configuration for this workload: in-process inference (parallel_workers 0) through a small
onnxruntime MLModel written below. A last section compares the binary tensor extension with JSON
for the same larger request (a batch of 32 samples) on modelport.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
MLSERVER_VENV = HERE / ".venv-mlserver"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "uvloop<0.22", "onnxruntime", "numpy"]
CONCURRENCY = (1, 8, 64)
BATCH = {"max_batch_size": 32, "max_queue_delay_us": 500}
BINARY_ROWS = 32
console = Console()

MLSERVER_RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(self.settings.parameters.uri, options,
                                             providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        (y,) = self._session.run(None, {"input": x})
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("probabilities", y)])
"""


def tutorial_mlp(path: Path, n_in: int = 784) -> Path:
    """784 (``n_in``) -> dense 128 relu -> dense 64 relu -> dense 10 softmax, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    sizes = [n_in, 128, 64, 10]
    nodes, inits, previous = [], [], "input"
    for i, (rows, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = (rng.standard_normal((rows, n_out)) / np.sqrt(rows)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{i}")]  # fmt: skip
        nodes += [helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]  # fmt: skip
        last = i == len(sizes) - 2
        act = "probabilities" if last else f"r{i}"
        nodes.append(helper.make_node("Softmax", [f"a{i}"], [act], axis=1) if last
                     else helper.make_node("Relu", [f"a{i}"], [act]))  # fmt: skip
        previous = act
    graph = helper.make_graph(
        nodes, "tutorial_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# -- tools -----------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    console.print("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def ensure_mlserver() -> Path:
    python = MLSERVER_VENV / "bin" / "python"
    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
        console.print(f"creating {MLSERVER_VENV} with {' '.join(MLSERVER_PACKAGES)}")
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        (MLSERVER_VENV / ".gitignore").write_text("*\n")  # never committed
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *MLSERVER_PACKAGES], check=True)  # fmt: skip
    return MLSERVER_VENV / "bin" / "mlserver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} was not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(wrk: str, url: str, script: Path, connections: int, duration: float) -> dict:
    threads = 1 if connections == 1 else 2
    seconds = f"{max(1, round(duration))}s"  # wrk takes whole seconds only
    out = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", seconds, "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(out)}
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: .*timeout (\d+)", out)
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    elapsed = float(done.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "requests": int(done.group(1)), "seconds": elapsed,
            "errors": int(errors.group(1)) if errors else 0,
            "timeouts": int(socket_errors.group(1)) if socket_errors else 0}  # fmt: skip


def lua_post(path: Path, body_file: Path, headers: dict[str, str]) -> Path:
    lines = ['wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines += [f'local f = io.open("{body_file}", "rb")', 'wrk.body = f:read("*a")', "f:close()"]
    path.write_text("\n".join(lines) + "\n")
    return path


def print_table(title: str, head: list[str], cells: list[list[str]], markdown: bool) -> None:
    """A rich table, or a Markdown one, ending with the machine's load average."""
    one, five, fifteen = os.getloadavg()
    load = f"load average {one:.1f} {five:.1f} {fifteen:.1f} at the end"
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in cells:
            print("| " + " | ".join(row) + " |")
        print(f"\n{load}")
        return
    table = Table(*head, title=title)
    for row in cells:
        table.add_row(*row)
    console.print(table)
    console.print(load)


# -- servers ---------------------------------------------------------------------------------


def start_modelport(home: Path, port: int, batching: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "modelport", "--home", str(home), "serve", "tutorial-mlp",
            "--http-port", str(port), "--grpc-port", "0", "--intra-op-threads", "1"]  # fmt: skip
    if batching:
        args += ["--max-batch-size", str(BATCH["max_batch_size"]),
                 "--max-queue-delay-us", str(BATCH["max_queue_delay_us"])]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/ready", proc)
    return proc


def start_mlserver(mlserver: Path, work: Path, onnx_path: Path, port: int,
                   batching: bool) -> subprocess.Popen:  # fmt: skip
    root = work / ("mlserver-batching" if batching else "mlserver")
    model_dir = root / "tutorial-mlp"
    model_dir.mkdir(parents=True, exist_ok=True)
    (root / "onnx_runtime.py").write_text(MLSERVER_RUNTIME)
    (root / "settings.json").write_text(json.dumps({
        "parallel_workers": 0, "http_port": port, "grpc_port": free_port(),
        "metrics_port": free_port(), "host": "127.0.0.1", "debug": False,
    }))  # fmt: skip
    settings = {"name": "tutorial-mlp", "implementation": "onnx_runtime.OnnxModel",
                "parameters": {"uri": str(onnx_path)}}  # fmt: skip
    if batching:
        settings["max_batch_size"] = BATCH["max_batch_size"]
        settings["max_batch_time"] = BATCH["max_queue_delay_us"] / 1e6
    (model_dir / "model-settings.json").write_text(json.dumps(settings))
    # logs to /dev/null: MLServer writes an access-log line per request, and a slow log sink
    # would be measured as MLServer's own cost (p50 at c=1 went from 1.7 to 4 ms with a file)
    proc = subprocess.Popen([str(mlserver), "start", str(root)], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/ready", proc)
    return proc


def raw_onnxruntime(onnx_path: Path, duration: float) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 784), dtype=np.float32)
    times = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        start = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - start)
    return {"rps": len(times) / sum(times), "p50_ms": statistics.median(times) * 1e3,
            "p99_ms": float(np.percentile(times, 99)) * 1e3,
            "errors": 0, "timeouts": 0}  # fmt: skip


# -- the run ---------------------------------------------------------------------------------


def v2_body(rows: int) -> dict:
    x = np.random.default_rng(2).random((rows, 784), dtype=np.float32)
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 784],
                        "data": x.ravel().tolist()}]}  # fmt: skip


def binary_body(rows: int) -> tuple[bytes, int]:
    x = np.random.default_rng(2).random((rows, 784), dtype=np.float32)
    head = json.dumps({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 784],
                    "parameters": {"binary_data_size": x.nbytes}}],
        "parameters": {"binary_data_output": True},
    }).encode()  # fmt: skip
    return head + x.tobytes(), len(head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args()

    wrk = ensure_wrk()
    mlserver = ensure_mlserver()
    work = Path(tempfile.mkdtemp(prefix="modelport-bench-serving-"))
    try:
        rows = run_all(wrk, mlserver, work, args.duration)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, args.markdown)


def run_all(wrk: str, mlserver: Path, work: Path, duration: float) -> list[dict]:
    import modelport
    from modelport.registry import Registry
    from modelport.settings import Settings

    onnx_path = tutorial_mlp(work / "tutorial-mlp.onnx")
    home = work / "home"
    registry = Registry(Settings(home=home))
    modelport.register(onnx_path, "tutorial-mlp", registry=registry, alias="production")
    registry.close()

    body = work / "one-sample.json"
    body.write_text(json.dumps(v2_body(1)))
    script = lua_post(work / "post.lua", body, {"Content-Type": "application/json"})
    rows: list[dict] = []
    servers = [("modelport", False), ("modelport", True),
               ("MLServer 1.7.1", False), ("MLServer 1.7.1", True)]  # fmt: skip
    for name, batching in servers:
        port = free_port()
        console.print(f"[bold]{name}[/] (batching {'on' if batching else 'off'}) on port {port}")
        if name == "modelport":
            proc = start_modelport(home, port, batching)
        else:
            proc = start_mlserver(mlserver, work, onnx_path, port, batching)
        url = f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/infer"
        try:
            run_wrk(wrk, url, script, 8, min(3.0, duration))  # warm-up
            for connections in CONCURRENCY:
                result = run_wrk(wrk, url, script, connections, duration)
                rows.append({"server": name, "batching": batching, "c": connections, **result})
                console.print(f"  c={connections}: {result['rps']:.0f} req/s, "
                              f"p50 {result['p50_ms']:.3f} ms")  # fmt: skip
        finally:
            stop(proc)
    raw = raw_onnxruntime(onnx_path, min(duration, 5.0))
    rows.append({"server": "raw onnxruntime (in-process)", "batching": False, "c": 1, **raw})
    rows += binary_vs_json(wrk, home, work, duration)
    return rows


def binary_vs_json(wrk: str, home: Path, work: Path, duration: float) -> list[dict]:
    json_file = work / "batch.json"
    json_file.write_text(json.dumps(v2_body(BINARY_ROWS)))
    payload, header_length = binary_body(BINARY_ROWS)
    binary_file = work / "batch.bin"
    binary_file.write_bytes(payload)
    scripts = {
        "JSON": lua_post(work / "batch-json.lua", json_file, {"Content-Type": "application/json"}),
        "binary": lua_post(work / "batch-bin.lua", binary_file, {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        }),
    }  # fmt: skip
    port = free_port()
    console.print(f"[bold]modelport[/], {BINARY_ROWS} samples per request: JSON vs binary")
    proc = start_modelport(home, port, False)
    url = f"http://127.0.0.1:{port}/v2/models/tutorial-mlp/infer"
    rows = []
    try:
        for kind, script in scripts.items():
            run_wrk(wrk, url, script, 8, min(2.0, duration))
            result = run_wrk(wrk, url, script, 8, duration)
            rows.append({"server": f"modelport {kind}, {BINARY_ROWS}x784 FP32", "batching": False,
                         "c": 8, "kind": kind, **result})  # fmt: skip
            console.print(f"  {kind}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.3f} ms")
    finally:
        stop(proc)
    return rows


def report(rows: list[dict], markdown: bool) -> None:
    table = Table(
        "server",
        "batching",
        "concurrency",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors / timeouts",
        title="KServe V2 REST, tutorial MLP, one sample per request (wrk, loopback)",
    )
    for row in rows:
        table.add_row(row["server"], "on" if row["batching"] else "off", str(row["c"]),
                      f"{row['rps']:,.0f}", f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}",
                      f"{row['errors']} / {row['timeouts']}")  # fmt: skip
    console.print(table)

    def best(server: str, c: int) -> dict:
        return max((r for r in rows if r["server"] == server and r["c"] == c and "kind" not in r),
                   key=lambda r: r["rps"])  # fmt: skip

    ours, theirs = best("modelport", 64), best("MLServer 1.7.1", 64)
    ratio = ours["rps"] / theirs["rps"]
    p50_ours = min(r["p50_ms"] for r in rows if r["server"] == "modelport" and r["c"] == 1)
    p50_theirs = min(r["p50_ms"] for r in rows if r["server"] == "MLServer 1.7.1" and r["c"] == 1)
    kinds = {r["kind"]: r for r in rows if "kind" in r}
    speedup = kinds["binary"]["rps"] / kinds["JSON"]["rps"]
    checks = [
        (f"c=64: best modelport / best MLServer = {ratio:.2f}x (target >= 2x)", ratio >= 2),
        (f"c=1 p50: modelport {p50_ours:.3f} ms vs MLServer {p50_theirs:.3f} ms (target <=)",
         p50_ours <= p50_theirs),
        (f"binary vs JSON, {BINARY_ROWS}x784 FP32 request: {speedup:.1f}x (target >= 3x)",
         speedup >= 3),
    ]  # fmt: skip
    for text, ok in checks:
        console.print(f"[{'green' if ok else 'red'}]{'met' if ok else 'MISSED'}[/] {text}")
    if markdown:
        print("\n| server | batching | concurrency | req/s | p50 ms | p99 ms | errors / timeouts |")
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['server']} | {'on' if row['batching'] else 'off'} | {row['c']} | "
                  f"{row['rps']:,.0f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
                  f"{row['errors']} / {row['timeouts']} |")  # fmt: skip
        for text, ok in checks:
            print(f"- {'met' if ok else 'MISSED'}: {text}")


if __name__ == "__main__":
    main()
