import struct

import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.serving.codecs import (
    DATATYPES,
    coerce_values,
    datatype_of,
    decode_tensor,
    encode_json,
    from_raw,
    json_data,
    signature_datatype,
    to_raw,
)  # fmt: skip

NUMERIC = [name for name in DATATYPES if name != "BYTES"]


def sample(datatype: str) -> np.ndarray:
    dtype = DATATYPES[datatype]
    if dtype.kind == "b":
        return np.array([[True, False, True], [False, False, True]])
    if dtype.kind == "f":
        return np.array([[0.5, -1.25, 3.0], [1e3, 0.0, -7.5]], dtype=dtype)
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dtype)


@pytest.mark.parametrize("datatype", NUMERIC)
def test_every_numeric_datatype_round_trips_through_json_and_raw(datatype: str) -> None:
    x = sample(datatype)
    assert datatype_of(x) == datatype
    encoded = encode_json("t", x)
    assert encoded["datatype"] == datatype and encoded["shape"] == [2, 3]
    data = np.asarray(encoded["data"]).tolist()
    from_json = decode_tensor("t", datatype, [2, 3], data=data)
    assert from_json.dtype == DATATYPES[datatype]
    np.testing.assert_array_equal(from_json, x)
    from_bytes = decode_tensor("t", datatype, [2, 3], raw=to_raw(x))
    np.testing.assert_array_equal(from_bytes, x)


def test_bytes_round_trip_json_and_raw_with_length_prefixes() -> None:
    x = np.array([["a", "héllo"], ["", "z" * 300]], dtype=object)
    raw = to_raw(x)
    assert raw[:4] == struct.pack("<I", 1) and raw[4:5] == b"a"
    np.testing.assert_array_equal(decode_tensor("s", "BYTES", [2, 2], raw=raw), x)
    assert json_data(x) == ["a", "héllo", "", "z" * 300]
    np.testing.assert_array_equal(decode_tensor("s", "BYTES", [2, 2], data=json_data(x)), x)


def test_nested_data_equals_flat_data() -> None:
    flat = decode_tensor("x", "FP32", [2, 2], data=[1, 2, 3, 4])
    nested = decode_tensor("x", "FP32", [2, 2], data=[[1, 2], [3, 4]])
    np.testing.assert_array_equal(flat, nested)
    assert flat.shape == (2, 2) and flat.dtype == np.float32


def test_signature_dtype_names_map_to_protocol_names() -> None:
    assert signature_datatype("float32") == "FP32"
    assert signature_datatype("string") == "BYTES"
    assert signature_datatype("bool") == "BOOL"


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP99", [2], [1, 2], "unknown datatype"),
        ("FP32", [3], [1, 2], "needs 3"),
        ("FP32", [2, 2], [[1, 2], [3]], "rectangular"),
        ("FP32", [2], [1, "x"], "rectangular"),
        ("FP32", [2], [1, None], "null"),
        ("FP32", [2], [1, {"a": 1}], "rectangular"),
        ("FP32", [-1], [1], "shape"),
        ("FP32", "2", [1, 2], "shape"),
        ("FP32", [True], [1], "shape"),
        ("FP32", [1] * 70, [1], "the limit is 32"),
        ("BYTES", [1] * 70, ["a"], "the limit is 32"),
        ("INT32", [2], [1.5, 2], "floats"),
        ("INT8", [2], [1, 300], "outside the range"),
        ("UINT8", [2], [-1, 3], "outside the range"),
        ("BOOL", [2], [1, 0], "integers"),
        ("BYTES", [2], ["a", 3], "strings"),
        ("BYTES", [3], ["a", "b"], "needs 3"),
        ("INT64", [1], [2**70], "outside the range"),
        ("UINT64", [2], [2**64, 1], "outside the range"),
    ],
)
def test_bad_json_tensors_are_invalid_input(datatype, shape, data, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_tensor("x", datatype, shape, data=data)


def test_missing_data_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="no data"):
        decode_tensor("x", "FP32", [1])


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\x00" * 7, "needs 8"),
        ("INT64", [1], b"\x00" * 16, "needs 8"),
        ("BOOL", [2], b"\x00\x07", "0 or 1"),
        ("BYTES", [1], b"\x05\x00\x00\x00ab", "runs past the end"),
        ("BYTES", [1], b"\x05\x00", "truncated"),
        ("BYTES", [2], b"\x01\x00\x00\x00a", "needs 2"),
    ],
)
def test_bad_raw_tensors_are_invalid_input(datatype, shape, raw, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_tensor("x", datatype, shape, raw=raw)


def test_raw_decoding_does_not_copy_fixed_size_tensors() -> None:
    x = np.arange(6, dtype=np.float32)
    raw = memoryview(x.tobytes())
    decoded = from_raw(raw, np.dtype(np.float32), (2, 3), "x")
    assert decoded.shape == (2, 3) and not decoded.flags.owndata


def test_empty_tensor_with_zero_dimension() -> None:
    x = decode_tensor("x", "INT32", [0, 4], data=[])
    assert x.shape == (0, 4) and x.dtype == np.int32


def test_coerce_values_keeps_nesting_as_shape_and_rejects_wrong_kinds() -> None:
    x = coerce_values("x", np.dtype(np.float32), [[1, 2, 3], [4, 5, 6]])
    assert x.shape == (2, 3) and x.dtype == np.float32
    s = coerce_values("s", np.dtype(object), [["a", "b"]])
    assert s.shape == (1, 2)
    with pytest.raises(InvalidInput):
        coerce_values("s", np.dtype(object), [[1, 2]])
    with pytest.raises(InvalidInput):
        coerce_values("i", np.dtype(np.int64), [0.5])


def test_float16_outputs_are_written_as_json_numbers() -> None:
    import orjson

    x = np.array([0.5, 1.5], dtype=np.float16)
    assert orjson.loads(orjson.dumps(json_data(x), option=orjson.OPT_SERIALIZE_NUMPY)) == [0.5, 1.5]
