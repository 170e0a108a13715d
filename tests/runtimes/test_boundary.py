"""The edge every backend shares: input layout and the one translation of backend errors."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from modelport.errors import BackendError, InvalidInput, NotFound
from modelport.runtimes.boundary import inputs_for, translated
from modelport.signature import Signature, TensorSpec

SIGNATURE = Signature((TensorSpec("x", "float32", (-1, 4)),), (TensorSpec("y", "float32", (-1,)),))


def test_arrays_a_backend_can_take_are_passed_without_a_copy() -> None:
    x = np.ones((2, 4), np.float32)
    assert inputs_for(SIGNATURE, {"x": x})["x"] is x
    assert inputs_for(SIGNATURE, {"x": x}, writable=True)["x"] is x
    frozen = np.frombuffer(x.tobytes(), np.float32).reshape(2, 4)
    assert inputs_for(SIGNATURE, {"x": frozen})["x"] is frozen  # read-only is fine to read


def test_read_only_strided_and_foreign_order_arrays_are_laid_out_once() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    frozen = np.frombuffer(x.tobytes(), np.float32).reshape(2, 4)
    writable = inputs_for(SIGNATURE, {"x": frozen}, writable=True)["x"]
    assert writable.flags.writeable and writable.flags.c_contiguous
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    for value in (strided, np.asfortranarray(x), x.astype(">f4")):
        laid_out = inputs_for(SIGNATURE, {"x": value})["x"]
        assert laid_out.flags.c_contiguous and laid_out.dtype == np.float32
        assert laid_out.dtype.isnative
        np.testing.assert_array_equal(laid_out, x)


def test_zero_rows_and_out_of_range_values_are_refused_at_the_boundary() -> None:
    with pytest.raises(InvalidInput, match="has no rows"):
        inputs_for(SIGNATURE, {"x": np.zeros((0, 4), np.float32)})
    with pytest.raises(InvalidInput, match="outside the range of float32"):
        inputs_for(SIGNATURE, {"x": np.full((1, 4), 1e308)})
    nan = inputs_for(SIGNATURE, {"x": np.full((1, 4), np.nan)})["x"]  # NaN is a value, not an error
    assert np.isnan(nan).all()


def test_backend_errors_become_the_modelport_tree_once() -> None:
    with pytest.raises(InvalidInput, match="the model rejected the input: Got invalid dimensions"):
        with translated("Backend failed"):
            raise RuntimeError("Got invalid dimensions for input x\nmore detail")
    with pytest.raises(BackendError, match="^Backend failed: out of memory$"):
        with translated("Backend failed"):
            raise MemoryError("out of memory")
    with pytest.raises(BackendError, match="could not load m.bin: bad shape in file"):
        with translated("could not load m.bin", inputs=False):  # loading: never the input's fault
            raise ValueError("bad shape in file")
    with pytest.raises(BackendError, match="^B: the message$"):
        with translated("B", skip=("Exception from",)):
            raise RuntimeError("Exception from src/core.cpp:12\nthe message")
    with pytest.raises(NotFound):  # modelport's own errors pass unchanged
        with translated("B"):
            raise NotFound("missing")


def test_every_backend_translates_through_the_one_context_manager() -> None:
    from modelport.runtimes import litert, onnx, openvino
    from modelport.serving import batching, loaded

    for module in (onnx, openvino, litert):
        source = inspect.getsource(module)
        assert "translated(" in source and "except Exception" not in source, module.__name__
    for module in (loaded, batching):  # serving does not wrap runtime errors a second time
        assert 'BackendError(f"{type(exc).__name__}' not in inspect.getsource(module)
