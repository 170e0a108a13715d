from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from modelport.batch.features import FeatureMap
from modelport.batch.plan import chunks_of
from modelport.batch.reader import ChunkReader
from modelport.batch.sources import FileInfo, plan_file
from modelport.errors import InvalidInput
from modelport.signature import Signature, TensorSpec

VECTOR = Signature((TensorSpec("input", "float32", (-1, 3)),), (TensorSpec("y", "float32", (-1,)),))
TWO = Signature((TensorSpec("x", "float32", (-1, 2)), TensorSpec("k", "int64", (-1,))),
                (TensorSpec("y", "float32", (-1,)),))  # fmt: skip


def info(columns: dict[str, str], rows: int = 4) -> FileInfo:
    return FileInfo("t.parquet", "parquet", rows, columns, (), ((0, rows, 0, 0),))


def test_vector_input_takes_numeric_columns_or_the_listed_ones() -> None:
    cols = {"id": "string", "a": "number", "b": "number", "c": "number", "note": "string"}
    fmap = FeatureMap.plan(VECTOR, info(cols), id_column="id")
    assert fmap.bindings[0].columns == ("a", "b", "c")
    cols["z"] = "number"
    fmap = FeatureMap.plan(VECTOR, info(cols), columns=["z", "a", "b"])
    assert fmap.bindings[0].columns == ("z", "a", "b") and fmap.columns == ["z", "a", "b"]
    with pytest.raises(InvalidInput, match="takes 3 features; 4 numeric"):
        FeatureMap.plan(VECTOR, info(cols))


@pytest.mark.parametrize(
    ("columns", "id_column", "message"),
    [
        (["a", "nope", "b"], None, r"unknown column\(s\) \['nope'\] in --columns"),
        (None, "nope", r"unknown column\(s\) \['nope'\] in --id-column"),
        (["input=nope"], None, "unknown column"),
        (["other=a"], None, "no input 'other'"),
        (["a", "input=b"], None, "either INPUT=COLUMN pairs or feature column names"),
    ],
)
def test_bad_column_options_are_refused(columns, id_column, message) -> None:
    cols = {"a": "number", "b": "number", "c": "number"}
    with pytest.raises(InvalidInput, match=message):
        FeatureMap.plan(VECTOR, info(cols), columns=columns, id_column=id_column)


def test_inputs_bind_by_name_or_pairs() -> None:
    fmap = FeatureMap.plan(TWO, info({"x": "list", "k": "number"}))
    assert [(b.input, b.kind, b.columns) for b in fmap.bindings] == [
        ("x", "list", ("x",)), ("k", "scalar", ("k",))]  # fmt: skip
    fmap = FeatureMap.plan(TWO, info({"pair": "list", "k": "number"}), columns=["x=pair"])
    assert fmap.bindings[0].columns == ("pair",)
    with pytest.raises(InvalidInput, match=r"input\(s\) \['x'\] are not columns"):
        FeatureMap.plan(TWO, info({"k": "number"}))


def test_npy_feeds_a_single_input_model_of_matching_shape() -> None:
    npy = FileInfo("x.npy", "npy", 5, {}, (5, 3), ((0, 5, 0, 0),))
    fmap = FeatureMap.plan(VECTOR, npy)
    assert fmap.bindings[0].kind == "array" and fmap.columns is None
    with pytest.raises(InvalidInput, match="rows of shape"):
        FeatureMap.plan(VECTOR, FileInfo("x.npy", "npy", 5, {}, (5, 4), ()))
    with pytest.raises(InvalidInput, match="single-input model"):
        FeatureMap.plan(TWO, npy)
    with pytest.raises(InvalidInput, match="need a table input"):
        FeatureMap.plan(VECTOR, npy, id_column="id")


def test_bad_csv_rows_get_row_numbers_and_reasons(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,a,b,c\n0,1,2,3\n1,1,x,3\n2,1,2\n3,,2,3\n4,1,2,3,4\n5,4,5,6\n\n7,7,8,9\n")
    plan = plan_file(path, 3)
    fmap = FeatureMap.plan(VECTOR, plan, id_column="id")
    reader = ChunkReader(fmap.columns)
    converted = [fmap.convert(reader.read(c), c) for c in chunks_of([plan])]
    kept = np.concatenate([c.rows for c in converted])
    assert kept.tolist() == [0, 5, 7]
    assert [i for c in converted for i in c.ids.to_pylist()] == [0, 5, 7]  # the id rides along
    x = np.concatenate([c.inputs["input"] for c in converted])
    assert x.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]] and x.dtype == np.float32
    errors = dict(e for c in converted for e in c.errors)
    assert errors == {
        1: "non-numeric value 'x' in column 'b'",
        2: "wrong length: 3 fields, the header has 4",
        3: "missing value in column 'a'",
        4: "wrong length: 5 fields, the header has 4",
        6: "missing value in column 'a'",  # an empty line
    }


def test_bad_jsonl_rows_missing_column_and_wrong_length(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"x": [1, 2], "k": 1}\n{"x": [1, 2, 3], "k": 2}\n{"k": 3}\nnot json\n'
        '{"x": [1, "a"], "k": 5}\n{"x": [5, 6], "k": "seven"}\n{"x": [7, 8], "k": 8}\n'
    )
    plan = plan_file(path, 100)
    fmap = FeatureMap.plan(TWO, plan)
    chunk = chunks_of([plan])[0]
    converted = fmap.convert(ChunkReader(fmap.columns).read(chunk), chunk)
    assert converted.rows.tolist() == [0, 6]
    assert converted.inputs["x"].tolist() == [[1, 2], [7, 8]]
    assert converted.inputs["k"].tolist() == [1, 8] and converted.inputs["k"].dtype == np.int64
    reasons = dict(converted.errors)
    assert reasons[1] == "wrong length: column 'x' has 3 values, the model expects 2"
    assert reasons[2] == "missing column 'x'"
    assert reasons[3] == "not a JSON object"
    assert reasons[4].startswith("non-numeric value") and "'x'" in reasons[4]
    assert reasons[5] == "non-numeric value 'seven' in column 'k'"


def test_null_values_in_parquet_are_bad_rows() -> None:
    table = pa.table({"a": [1.0, None, 3.0], "b": [1.0, 2.0, 3.0], "c": [1, 2, None]})
    plan = info({"a": "number", "b": "number", "c": "number"}, rows=3)
    fmap = FeatureMap.plan(VECTOR, plan)
    chunk = chunks_of([plan])[0]
    converted = fmap.convert(table, chunk)
    assert converted.rows.tolist() == [0]
    assert converted.errors == [(1, "missing value in column 'a'"),
                                (2, "missing value in column 'c'")]  # fmt: skip


def test_feature_major_blocks_hold_each_batch_contiguous_without_bad_rows() -> None:
    from modelport.batch.buffers import Blocks

    a = np.arange(10, dtype=np.float64)
    table = pa.table({"a": a, "b": [None if i == 4 else 10.0 + i for i in range(10)], "c": -a})
    plan = info({"a": "number", "b": "number", "c": "number"}, rows=10)
    chunk = chunks_of([plan])[0]
    fmap = FeatureMap.plan(VECTOR, plan)
    converted = fmap.convert(table, chunk, feature_major=frozenset({"input"}), batch=4)
    blocks = converted.inputs["input"]
    assert isinstance(blocks, Blocks) and blocks.shape == (3, 9)
    kept = [i for i in range(10) if i != 4]
    want = np.array([kept, [10.0 + i for i in kept], [-i for i in kept]], np.float32)
    assert np.array_equal(np.asarray(blocks), want)
    assert [blocks.block(s).shape for s in (0, 4, 8)] == [(3, 4), (3, 4), (3, 1)]
    assert all(blocks.block(s).flags.c_contiguous for s in (0, 4, 8))
    assert blocks.block(4)[0].tolist() == [5, 6, 7, 8]
    assert converted.errors == [(4, "missing value in column 'b'")]


def test_blocks_of_another_batch_size_are_scored_whole() -> None:
    from modelport.batch.buffers import Blocks
    from modelport.batch.scorer import predict_in_batches

    class Echo:  # a runtime that takes [features, rows] and returns rows
        def predict(self, inputs: dict) -> dict:
            return {"y": inputs["input"].T.sum(axis=1)}

    x = np.arange(30, dtype=np.float32).reshape(3, 10)
    blocks = Blocks.empty(3, 10, 4, np.dtype(np.float32))
    for j in range(3):
        blocks.set_row(j, x[j])
    for batch_size in (4, 3, 16):  # the blocks' own size, another, more than the rows
        got = predict_in_batches(Echo(), VECTOR, {"input": blocks}, batch_size,
                                 frozenset({"input"}))  # fmt: skip
        assert np.array_equal(got["y"], x.sum(axis=0)), batch_size


def test_pooled_buffers_are_never_shared_by_chunks_in_flight_whatever_the_inputs() -> None:
    """A pool of k sets: k chunks converted at once each keep their own arrays (a model with
    several inputs as for one), and a set given back is reused by the next chunk."""
    from modelport.batch.buffers import BufferPool

    sig = Signature((TensorSpec("a", "float32", (-1,)), TensorSpec("b", "float32", (-1, 1))),
                    (TensorSpec("y", "float32", (-1,)),))  # fmt: skip
    spans = tuple((start, start + 10, 0, 0) for start in range(0, 50, 10))
    plan = FileInfo("t.parquet", "parquet", 50, {"a": "number", "b": "number"}, (), spans)
    fmap = FeatureMap.plan(sig, plan)
    chunks = chunks_of([plan])
    reuse = 4
    pool = BufferPool(reuse)
    import contextlib

    with contextlib.ExitStack() as stack:
        converted = []
        for chunk in chunks[:reuse]:  # every set taken at once
            buffers = stack.enter_context(pool.take())
            rows = np.arange(chunk.start, chunk.stop, dtype=np.float64)
            converted.append(fmap.convert(pa.table({"a": rows, "b": -rows}), chunk,
                                          buffers).inputs)  # fmt: skip
        for i, inputs in enumerate(converted):
            want = np.arange(10 * i, 10 * i + 10, dtype=np.float32)
            assert np.array_equal(inputs["a"], want), i
            assert np.array_equal(inputs["b"][:, 0], -want), i
        bases = {id(v.base if v.base is not None else v) for c in converted for v in c.values()}
        assert len(bases) == 2 * reuse  # no array shared between inputs or chunks
    with pool.take() as buffers:  # a set given back is reused, not reallocated
        reused = fmap.convert(pa.table({"a": np.zeros(10), "b": np.zeros(10)}), chunks[4],
                              buffers).inputs  # fmt: skip
        assert any(np.shares_memory(reused["a"], c["a"]) for c in converted)
