"""The tutorial MLP (dense 128 relu -> dense 64 relu -> 10 softmax) trained once on scikit-learn's
digits, exported to ONNX once, and registered fresh in each test's registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from modelport.registry import Registry


@dataclass(frozen=True)
class Digits:
    onnx: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    files: dict[str, Path]  # the same arrays as .npy files


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from modelport.importers.torch import from_module

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    torch.set_num_threads(1)  # tiny matrices: threads only add contention
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
        torch.nn.Softmax(dim=1),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(150):  # full-batch Adam: ~97% test accuracy in well under a second
        loss = torch.nn.functional.cross_entropy(net[:-1](xt), yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    root = tmp_path_factory.mktemp("digits")
    artifact = from_module(net.eval(), root, x_train[:4])
    files = {}
    for key, arr in {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
    }.items():
        files[key] = root / f"{key}.npy"
        np.save(files[key], arr)
    return Digits(root / artifact.entrypoint, x_train, y_train, x_test, y_test, files)


@pytest.fixture
def tutorial(sqlite_registry: Registry, digits: Digits) -> str:
    """The tutorial MLP registered as ``digits:1``; returns its reference."""
    from modelport.importers.onnx import from_path

    return sqlite_registry.add(from_path(digits.onnx), "digits").ref
