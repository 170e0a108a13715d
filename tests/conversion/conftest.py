"""Shared, session-scoped models for the conversion tests: TensorFlow is slow to import and train.

The tutorial MLP (dense 128 relu -> 64 relu -> 10 softmax) and a small CNN (conv -> pool ->
dense), both written in Keras and trained on scikit-learn's digits, registered once in one
registry; each conversion is made once and shared by the tests that inspect it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.registry import Registry
from modelport.settings import Settings

assert importlib.util.find_spec("tensorflow"), "tests/conversion need the 'keras' extra"


@pytest.fixture(scope="session", autouse=True)
def _quiet_tensorflow() -> None:
    """Import TensorFlow once, through modelport, which mutes its native start-up banners."""
    from modelport.importers.keras import tensorflow

    tensorflow()


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def _train(model: Any, x: np.ndarray, y: np.ndarray, epochs: int) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def keras_mlp(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)),
        layers.Dense(128, activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    return _train(model, *digits, epochs=15)


@pytest.fixture(scope="session")
def keras_cnn(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    x, y = digits
    return _train(model, x.reshape(-1, 8, 8, 1), y, epochs=15)


@pytest.fixture(scope="session")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(Settings(home=tmp_path_factory.mktemp("conversion") / "home", user="tester"))
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture(scope="session")
def registered(shared_registry: Registry, keras_mlp: Any, keras_cnn: Any) -> dict[str, str]:
    """Model key -> reference of its ONNX version in ``shared_registry``."""
    import modelport

    mlp = modelport.register(keras_mlp, "mlp", registry=shared_registry)
    cnn = modelport.register(keras_cnn, "cnn", registry=shared_registry)
    return {"mlp": mlp.ref, "cnn": cnn.ref}


def model_inputs(key: str, x: np.ndarray) -> dict[str, np.ndarray]:
    return {"input": x.reshape(-1, 8, 8, 1) if key == "cnn" else x}


@pytest.fixture(scope="session")
def converted(
    shared_registry: Registry, registered: dict[str, str], digits: tuple[np.ndarray, np.ndarray]
) -> Callable[..., Any]:
    """``converted("mlp", "tflite", "int8")`` -> the Conversion, made once per session."""
    from modelport.conversion import convert

    cache: dict[tuple[str, str, str], Any] = {}
    x, _ = digits

    def get(key: str, to: str, precision: str = "fp32") -> Any:
        if (key, to, precision) not in cache:
            cache[key, to, precision] = convert(
                registered[key],
                to,
                registry=shared_registry,
                precision=precision,
                calibration=model_inputs(key, x[:200]) if precision == "int8" else None,
                sample=model_inputs(key, x[1400:]),
            )
        return cache[key, to, precision]

    return get


def write_onnx_with_op(
    path: Path, op: str, domain: str = "", dims: tuple[Any, ...] = ("batch", 4)
) -> Path:
    """A one-node ONNX model: ``op`` from ``domain`` applied to ``input``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op, ["input"], ["output"], domain=domain)], "one",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(dims))],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
