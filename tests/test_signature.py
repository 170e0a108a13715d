import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.signature import Signature, TensorSpec, as_input_dict

SIG = Signature(
    (TensorSpec("x", "float32", (-1, 4)), TensorSpec("ids", "int64", (-1,))),
    (TensorSpec("y", "float32", (-1, 2)),),
)


def test_round_trip_through_dict() -> None:
    assert Signature.from_dict(SIG.to_dict()) == SIG
    assert SIG.describe() == "(x: float32[?,4], ids: int64[?]) -> (y: float32[?,2])"


def test_coerce_casts_within_kind_and_checks_shapes() -> None:
    out = SIG.coerce_inputs({"x": [[1, 2, 3, 4]], "ids": np.array([7], np.int32)})
    assert out["x"].dtype == np.float32 and out["ids"].dtype == np.int64


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((1, 4))}, "missing input"),
        ({"x": np.zeros((1, 4)), "ids": [1], "z": 1}, "unknown input"),
        ({"x": np.zeros((1, 5)), "ids": [1]}, "dimension 1 is 5"),
        ({"x": np.zeros(4), "ids": [1]}, "expects 2 dimensions"),
        ({"x": np.zeros((1, 4)), "ids": [1.5]}, "dtype float64"),
        ({"x": [["a", "b", "c", "d"]], "ids": [1]}, "dtype <U1"),
        ({"x": [[1, 2], [3]], "ids": [1]}, "not a rectangular array"),
    ],
)
def test_coerce_rejects_with_a_clear_message(inputs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SIG.coerce_inputs(inputs)


def test_bare_array_only_for_single_input_models() -> None:
    single = Signature((TensorSpec("x", "float32", (-1, 4)),))
    assert list(as_input_dict(single, [[1, 2, 3, 4]])) == ["x"]
    with pytest.raises(InvalidInput, match="takes 2 inputs"):
        as_input_dict(SIG, [[1, 2, 3, 4]])


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown dtype"):
        TensorSpec("x", "float128", (1,))
