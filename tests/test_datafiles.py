"""One reader for files of numbers, one CSV header rule, one maker of synthetic inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelport.datafiles import has_header, read_numbers
from modelport.errors import InvalidInput
from modelport.samples import synthetic_inputs
from modelport.signature import Signature, TensorSpec


def test_a_first_row_is_a_header_when_none_of_its_cells_is_a_number() -> None:
    assert has_header(["a", "b", "c"])
    assert not has_header(["1", "2.5", "-3e2"])
    assert not has_header(["1", "2", "oops"])  # a data row with a bad value, not column names
    assert not has_header([])


def test_csv_with_or_without_a_header(tmp_path: Path) -> None:
    (tmp_path / "named.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "bare.csv").write_text("1,2\n3,4\n")
    for name in ("named.csv", "bare.csv"):
        assert read_numbers(tmp_path / name).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    (tmp_path / "bad.csv").write_text("1,2,3,oops\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    (tmp_path / "header.csv").write_text("a,b\n")
    for name, message in (("bad.csv", "non-numeric"), ("ragged.csv", "different numbers"),
                          ("header.csv", "header but no rows")):  # fmt: skip
        with pytest.raises(InvalidInput, match=message):
            read_numbers(tmp_path / name)


def test_every_format_and_the_refusals(tmp_path: Path) -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x)
    (tmp_path / "x.json").write_text('{"inputs": {"input": [[1, 2]]}}')
    assert np.array_equal(read_numbers(tmp_path / "x.npy"), x)
    assert np.array_equal(read_numbers(tmp_path / "x.npz")["input"], x)
    assert read_numbers(tmp_path / "x.json") == {"inputs": {"input": [[1, 2]]}}
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "x.txt").write_text("1")
    for name, message in (("empty.npy", "is empty"), ("missing.npy", "does not exist"),
                          ("x.txt", "use one of .npy")):  # fmt: skip
        with pytest.raises(InvalidInput, match=message):
            read_numbers(tmp_path / name)
    with pytest.raises(InvalidInput, match="use one of .npy, .npz"):
        read_numbers(tmp_path / "x.json", (".npy", ".npz"))  # formats the caller does not take


def test_synthetic_inputs_fit_the_signature_and_repeat() -> None:
    signature = Signature((TensorSpec("a", "float32", (-1, 3, -1)), TensorSpec("k", "int64", (-1,)),
                           TensorSpec("s", "string", (-1,))))  # fmt: skip
    zeros = synthetic_inputs(signature, 2, fill="zeros", free=1)
    assert zeros["a"].shape == (2, 3, 1) and not zeros["a"].any()
    assert zeros["s"].tolist() == ["", ""]
    numbers = Signature(signature.inputs[:2])
    one, two = synthetic_inputs(numbers, 5), synthetic_inputs(numbers, 5)
    assert one["a"].shape == (5, 3, 8) and one["a"].dtype == np.float32
    assert np.array_equal(one["a"], two["a"]) and np.array_equal(one["k"], two["k"])
    assert not np.array_equal(one["a"], synthetic_inputs(numbers, 5, seed=1)["a"])
    numbers.coerce_inputs(one)  # valid by construction
    with pytest.raises(InvalidInput, match="cannot draw random values"):
        synthetic_inputs(signature)
