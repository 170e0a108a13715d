"""Register and resolve latency with 1,000 versions: modelport (SQLite, PostgreSQL) beside MLflow.

    .venv/bin/python benchmarks/registry.py [--versions 1000] [--no-mlflow] [--no-postgres]

MLflow runs in its own virtualenv (benchmarks/.venv-mlflow, created on first use) with the same
tiny ONNX files and its SQLite backend; its numbers come from the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import make_mlp_onnx  # noqa: E402

console = Console(width=120)
MLFLOW_VENV = ROOT / "benchmarks" / ".venv-mlflow"

MLFLOW_SCRIPT = r"""
import json, statistics, sys, time, logging, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import mlflow
from mlflow import MlflowClient
root, files = sys.argv[1], json.loads(sys.argv[2])
mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
mlflow.set_registry_uri(f"sqlite:///{root}/mlflow.db")
client = MlflowClient()
client.create_registered_model("bench")
reg = []
for path in files:
    t = time.perf_counter()
    client.create_model_version("bench", source=path)
    reg.append(time.perf_counter() - t)
client.set_registered_model_alias("bench", "production", "500")
res = []
for _ in range(300):
    t = time.perf_counter()
    client.get_model_version_by_alias("bench", "production")
    res.append(time.perf_counter() - t)
ver = []
for _ in range(300):
    t = time.perf_counter()
    client.get_model_version("bench", "500")
    ver.append(time.perf_counter() - t)
print(json.dumps({"register": reg, "resolve_alias": res, "resolve_version": ver}))
"""


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[int(0.95 * (len(ordered) - 1))] * 1e3


def bench_modelport(label: str, settings, files: list[Path]) -> dict[str, list[float]]:
    import modelport
    from modelport.registry import Registry

    registry = Registry(settings)
    register = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"modelport ({label}): registering", total=len(files))
        for path in files:
            t = time.perf_counter()
            modelport.register(path, "bench", registry=registry)
            register.append(time.perf_counter() - t)
            progress.advance(task)
    registry.set_alias("bench", "production", len(files) // 2)
    timings: dict[str, list[float]] = {"register": register}
    for key, ref in (
        ("resolve_alias", "bench@production"),
        ("resolve_version", f"bench:{len(files) // 2}"),
        ("resolve_latest", "bench"),
    ):
        samples = []
        for _ in range(300):
            t = time.perf_counter()
            registry.resolve(ref)
            samples.append(time.perf_counter() - t)
        timings[key] = samples
    registry.close()
    return timings


def bench_mlflow(workdir: Path, files: list[Path]) -> dict[str, list[float]] | None:
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        console.print("creating benchmarks/.venv-mlflow (pip install mlflow) ...")
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    with console.status("MLflow (sqlite): registering"):
        out = subprocess.run(
            [str(python), "-c", MLFLOW_SCRIPT, str(workdir), json.dumps([str(f) for f in files])],
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        console.print(f"[red]MLflow run failed:[/] {out.stderr.strip().splitlines()[-1]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    from modelport.settings import Settings

    rows: list[tuple[str, dict[str, list[float]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = [make_mlp_onnx(work / f"m{i}.onnx", seed=i) for i in range(args.versions)]
        sqlite = Settings(home=work / "sq")
        rows.append(("modelport, SQLite", bench_modelport("sqlite", sqlite, files)))
        if not args.no_postgres:
            from tests.pgserver import PostgresServer

            server = PostgresServer().start()
            try:
                url = server.url(server.create_database())
                pg = Settings(home=work / "pg", database_url=url)
                rows.append(("modelport, PostgreSQL", bench_modelport("postgresql", pg, files)))
            finally:
                server.stop()
        if not args.no_mlflow:
            (work / "mlflow").mkdir()
            result = bench_mlflow(work / "mlflow", files)
            if result:
                rows.append(("MLflow 3 registry, SQLite", result))

    table = Table(title=f"{args.versions} versions of one model: latency in ms (median / p95)")
    table.add_column("registry")
    for column in ("register", "resolve name@alias", "resolve name:N", "resolve latest"):
        table.add_column(column, justify="right")
    for label, t in rows:
        cells = []
        for key in ("register", "resolve_alias", "resolve_version", "resolve_latest"):
            if key in t:
                med, p95 = _ms(t[key])
                cells.append(f"{med:.2f} / {p95:.2f}")
            else:
                cells.append("-")
        table.add_row(label, *cells)
    console.print(table)
    alias_median = _ms(rows[0][1]["resolve_alias"])[0]
    verdict = "meets" if alias_median < 5 else "MISSES"
    console.print(f"resolve name@alias median {alias_median:.2f} ms: {verdict} the 5 ms target")


if __name__ == "__main__":
    main()
