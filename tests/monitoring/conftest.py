"""Fixtures for the monitoring tests: a registry whose MLP has reference statistics, and the real
app with its monitor running (payload writer and drift threads)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.monitoring.monitor import MonitorOptions
from modelport.monitoring.reference import baseline
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx

FEATURES = 4
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def reference_rows(rows: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def monitored_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """mlp:1 (production) with reference statistics from 5,000 standard normal rows."""
    tmp_path = tmp_path_factory.mktemp("monitored")
    reg = Registry(Settings(home=tmp_path / "home", user="tester"))
    try:
        modelport.register(make_mlp_onnx(tmp_path / "mlp.onnx"), "mlp", registry=reg,
                           alias="production")  # fmt: skip
        baseline(reg, "mlp:1", reference_rows())
        yield reg
    finally:
        reg.close()


@contextlib.asynccontextmanager
async def monitored_app(registry: Registry, options: MonitorOptions) -> AsyncIterator:
    """(client, monitor): the real app with its monitor started, an in-process httpx client."""
    import httpx

    from modelport.serving.app import ServerOptions, build
    from modelport.serving.config import ServeConfig

    models, _metrics, _plane, app = build(registry, ServeConfig(), ServerOptions(monitor=options))
    await models.start()
    app.monitor.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modelport") as client:
            yield client, app.monitor
    finally:
        app.monitor.stop()
        await models.stop()


def infer_body(x: np.ndarray, request_id: str | None = None) -> dict:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}  # fmt: skip
    if request_id is not None:
        body["id"] = request_id
    return body


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of ``name`` with exactly ``labels`` in a /metrics text."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def log_folder(tmp: Path) -> str:
    return str(tmp / "payloads")
