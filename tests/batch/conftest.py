from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.registry import Registry
from modelport.settings import Settings
from tests.conftest import make_mlp_onnx

N_IN = 4
FEATURES = ["a", "b", "c", "d"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def reg(home: Path, tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(Settings(home=home, user="tester"))
    modelport.register(make_mlp_onnx(tmp_path / "mlp.onnx", n_in=N_IN), "mlp", registry=registry)
    try:
        yield registry
    finally:
        registry.close()


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, N_IN)).astype(np.float32)


def frame(n: int, seed: int = 0):
    import pandas as pd

    df = pd.DataFrame(features(n, seed), columns=FEATURES)
    df.insert(0, "id", [f"row-{i}" for i in range(n)])
    return df


def expected(reg: Registry, x: np.ndarray) -> np.ndarray:
    """The model's outputs computed directly with ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(reg.path("mlp")), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def probabilities(table) -> np.ndarray:
    """The probabilities_0..2 columns of an output DataFrame as an array."""
    return table[[f"probabilities_{j}" for j in range(3)]].to_numpy()
