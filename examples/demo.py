"""The demo behind `make demo`: train the tutorial MLP on scikit-learn's digits, register it,
point `production` at it, predict through the registry, and list what the registry holds.

Everything lands in $MODELPORT_HOME (the Makefile sets ./.modelport).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import modelport

console = Console(width=None if sys.stdout.isatty() else 120)
MODEL = "digits"


class TutorialMLP(torch.nn.Sequential):
    """dense 128 relu -> dense 64 relu -> dense 10 softmax."""

    def __init__(self, n_features: int) -> None:
        super().__init__(
            torch.nn.Linear(n_features, 128), torch.nn.ReLU(),
            torch.nn.Linear(128, 64), torch.nn.ReLU(),
            torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1),
        )  # fmt: skip


def train(x: np.ndarray, y: np.ndarray, epochs: int = 40) -> TutorialMLP:
    torch.manual_seed(0)
    model = TutorialMLP(x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training the tutorial MLP", total=epochs)
        for _ in range(epochs):
            order = torch.randperm(len(xt))
            for start in range(0, len(xt), 32):
                idx = order[start : start + 32]
                optimizer.zero_grad()
                probs = model(xt[idx])
                loss = torch.nn.functional.nll_loss(torch.log(probs + 1e-9), yt[idx])
                loss.backward()
                optimizer.step()
            progress.advance(task)
    return model.eval()


def _relative(path: Path) -> Path:
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def main() -> None:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    model = train(x_train, y_train)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    console.print(f"test accuracy of the tutorial MLP: [bold]{accuracy:.4f}[/]")

    version = modelport.register(
        model,
        MODEL,
        sample_input=x_train[:1],
        alias="production",
        metrics={"test_accuracy": accuracy},
        tags={"dataset": "sklearn-digits", "architecture": "64-128-64-10"},
        description="Tutorial MLP trained on scikit-learn's handwritten digits",
    )
    console.print(f"registered [bold]{version.ref}[/] and pointed production at it")

    samples = Path(modelport.Settings().home) / "demo-samples.json"
    shown = _relative(samples)
    samples.write_text(json.dumps(x_test[:5].tolist()))
    runtime = modelport.load(f"{MODEL}@production")
    predicted = runtime.predict({"input": x_test[:5]})["output"].argmax(axis=1)
    console.print(
        f"predictions for 5 test digits: {predicted.tolist()} (true: {y_test[:5].tolist()})"
    )

    cli = [sys.executable, "-m", "modelport"]
    for args in (["predict", f"{MODEL}@production", "--input", str(shown)], ["list"],
                 ["list", MODEL], ["show", f"{MODEL}@production"]):  # fmt: skip
        console.print(f"\n[dim]$ modelport {' '.join(args)}[/]")
        subprocess.run(cli + args, check=True)
    serve(cli, x_test[:1])


def serve(cli: list[str], sample: np.ndarray) -> None:
    """End with the server running on the demo model, and a curl line that works against it."""
    import os
    import socket
    import time
    import urllib.request

    def free(port: int) -> int:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    http_port, grpc_port = free(8080), free(8081)
    request = Path(modelport.Settings().home) / "demo-request.json"
    request.write_text(json.dumps({"inputs": [{
        "name": "input", "datatype": "FP32", "shape": list(sample.shape),
        "data": sample.ravel().tolist()}]}))  # fmt: skip
    args = ["serve", f"{MODEL}@production", "--http-port", str(http_port),
            "--grpc-port", str(grpc_port)]  # fmt: skip
    console.print(f"\n[dim]$ modelport {' '.join(args)}[/]")
    server = subprocess.Popen(cli + args)
    base = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        curl = (f"curl -s {base}/v2/models/{MODEL}/infer -H 'Content-Type: application/json' "
                f"-d @{_relative(request)}")  # fmt: skip
        console.print(f"\n[bold]try it:[/]\n{curl}\n", highlight=False, soft_wrap=True)
        subprocess.run(curl, shell=True, check=True)
        console.print(
            f"\n\nalso: {base}/v2/models/{MODEL} (metadata), {base}/metrics, "
            f"TF Serving at {base}/v1/models/{MODEL}:predict, gRPC on "
            f"127.0.0.1:{grpc_port}. Ctrl-C stops the server.",
            highlight=False,
        )
        seconds = float(os.environ.get("DEMO_SERVE_SECONDS", "0"))  # 0: until Ctrl-C
        server.wait(timeout=seconds or None)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        pass
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
