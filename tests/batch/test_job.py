from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.batch import predict_batch
from modelport.batch.job import workdir_for
from modelport.errors import InvalidInput
from modelport.registry import Registry
from tests.batch.conftest import FEATURES, expected, features, frame, probabilities


def write_input(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("source", ["in.csv", "in.parquet", "in.jsonl"])
@pytest.mark.parametrize("sink", ["out.parquet", "out.csv"])
def test_tables_in_predictions_out_in_input_order(reg: Registry, tmp_path: Path, source: str,
                                                  sink: str) -> None:  # fmt: skip
    df = frame(1000)
    path = write_input(df, tmp_path / source)
    summary = predict_batch("mlp", path, tmp_path / sink, registry=reg, id_column="id",
                            chunk_rows=128, batch_size=50)  # fmt: skip
    assert (summary.rows, summary.errors, summary.chunks) == (1000, 0, 8)
    out = pd.read_parquet(tmp_path / sink) if sink.endswith("parquet") else pd.read_csv(
        tmp_path / sink)  # fmt: skip
    assert list(out["id"]) == list(df["id"])
    want = expected(reg, df[FEATURES].to_numpy(np.float32))
    assert np.allclose(probabilities(out), want, atol=1e-6)
    assert not workdir_for(tmp_path / sink).exists()  # parts are gone once the output is whole
    assert not (tmp_path / (sink + ".errors.csv")).exists()


def test_folder_of_files_and_npy(reg: Registry, tmp_path: Path) -> None:
    x = features(500)
    (tmp_path / "in").mkdir()
    for i in range(3):  # a folder of parts, read in name order
        np.save(tmp_path / "in" / f"part-{i}.npy", x[i * 200 : (i + 1) * 200])
    summary = predict_batch("mlp", tmp_path / "in", tmp_path / "out.npy", registry=reg,
                            chunk_rows=64)  # fmt: skip
    assert summary.rows == 500
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected(reg, x))


def test_numpy_array_and_dataframe_in_memory(reg: Registry) -> None:
    x = features(300)
    summary = predict_batch("mlp", x, registry=reg, chunk_rows=70)
    assert np.array_equal(summary.outputs["probabilities"], expected(reg, x))
    df = frame(300)
    df.loc[7, "b"] = None
    summary = predict_batch("mlp", df, registry=reg, id_column="id", chunk_rows=70)
    assert summary.rows == 299 and summary.errors == 1
    assert summary.error_rows == [[7, "<memory-table>", 7, "missing value in column 'b'"]]
    assert "row-7" not in list(summary.outputs["id"]) and len(summary.outputs["id"]) == 299


def test_dataframe_to_file(reg: Registry, tmp_path: Path) -> None:
    df = frame(100)
    summary = predict_batch("mlp", df, tmp_path / "out.parquet", registry=reg, id_column="id",
                            chunk_rows=30)  # fmt: skip
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == 100 and list(out["id"]) == list(df["id"])


def test_bad_rows_are_skipped_and_listed(reg: Registry, tmp_path: Path) -> None:
    df = frame(50)
    text = df.to_csv(index=False).splitlines()
    text[3] = "row-2,0.5,abc,0.1,0.2"  # non-numeric
    text[10] = "row-9,0.5,0.1"  # wrong length
    text[20] = "row-19,,0.1,0.2,0.3"  # missing value
    (tmp_path / "in.csv").write_text("\n".join(text) + "\n")
    out = tmp_path / "out.parquet"
    summary = predict_batch("mlp", tmp_path / "in.csv", out, registry=reg, id_column="id",
                            chunk_rows=8)  # fmt: skip
    assert (summary.rows, summary.errors) == (47, 3)
    assert summary.errors_path == tmp_path / "out.parquet.errors.csv"
    errors = pd.read_csv(summary.errors_path)
    assert list(errors["row"]) == [2, 9, 19] and list(errors["file"]) == ["in.csv"] * 3
    assert list(errors["reason"]) == ["non-numeric value 'abc' in column 'b'",
                                      "wrong length: 3 fields, the header has 5",
                                      "missing value in column 'a'"]  # fmt: skip
    kept = pd.read_parquet(out)
    assert "row-2" not in set(kept["id"]) and len(kept) == 47
    good = df.drop(index=[2, 9, 19])
    assert np.allclose(probabilities(kept), expected(reg, good[FEATURES].to_numpy(np.float32)),
                       atol=1e-6)  # fmt: skip


def test_on_error_fail_stops_without_output(reg: Registry, tmp_path: Path) -> None:
    df = frame(50)
    df.loc[30, "c"] = None
    write_input(df, tmp_path / "in.parquet")
    message = r"row 30 \(in.parquet, row 30\): missing value in column 'c'"
    with pytest.raises(InvalidInput, match=message):
        predict_batch("mlp", tmp_path / "in.parquet", tmp_path / "out.csv", registry=reg,
                      chunk_rows=10, on_error="fail")  # fmt: skip
    assert not (tmp_path / "out.csv").exists()


def test_empty_and_unknown_column_inputs_are_refused(reg: Registry, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("id,a,b,c,d\n")
    with pytest.raises(InvalidInput, match="the input is empty"):
        predict_batch("mlp", tmp_path / "empty.csv", tmp_path / "out.parquet", registry=reg)
    write_input(frame(5), tmp_path / "in.csv")
    with pytest.raises(InvalidInput, match="unknown column"):
        predict_batch("mlp", tmp_path / "in.csv", tmp_path / "out.parquet", registry=reg,
                      columns=["a", "b", "c", "zz"])  # fmt: skip
    with pytest.raises(InvalidInput, match="unsupported output format"):
        predict_batch("mlp", tmp_path / "in.csv", tmp_path / "out.xlsx", registry=reg)
    with pytest.raises(InvalidInput, match="one output and no id column"):
        predict_batch("mlp", tmp_path / "in.csv", tmp_path / "out.npy", registry=reg,
                      id_column="id")  # fmt: skip
    assert not list(tmp_path.glob(".out*"))


def test_a_changed_command_does_not_reuse_stale_parts(reg: Registry, tmp_path: Path) -> None:
    df = frame(40)
    write_input(df, tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    workdir = workdir_for(out)
    workdir.mkdir()
    (workdir / "job.json").write_text(json.dumps({"key": "from another command", "chunks": 4}))
    (workdir / "part-000000.arrow").write_bytes(b"stale")
    summary = predict_batch("mlp", tmp_path / "in.parquet", out, registry=reg, chunk_rows=10)
    assert summary.resumed == 0 and summary.rows == 40
    assert np.allclose(probabilities(pd.read_parquet(out)),
                       expected(reg, df[FEATURES].to_numpy(np.float32)), atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("sink", ["out.parquet", "out.csv"])
def test_chunks_with_no_good_row(reg: Registry, tmp_path: Path, sink: str) -> None:
    df = frame(30)
    df.loc[10:19, "a"] = None  # the whole second chunk is bad
    write_input(df, tmp_path / "in.parquet")
    summary = predict_batch("mlp", tmp_path / "in.parquet", tmp_path / sink, registry=reg,
                            id_column="id", chunk_rows=10)  # fmt: skip
    assert (summary.rows, summary.errors) == (20, 10)
    out = pd.read_parquet(tmp_path / sink) if sink.endswith("parquet") else pd.read_csv(
        tmp_path / sink)  # fmt: skip
    assert list(out["id"]) == [f"row-{i}" for i in list(range(10)) + list(range(20, 30))]
    df["a"] = None  # nothing converts: an empty output with the right columns
    write_input(df, tmp_path / "none.parquet")
    summary = predict_batch("mlp", tmp_path / "none.parquet", tmp_path / "none.parquet.out.parquet",
                            registry=reg, id_column="id", chunk_rows=10)  # fmt: skip
    out = pd.read_parquet(tmp_path / "none.parquet.out.parquet")
    assert summary.rows == 0 and summary.errors == 30
    assert list(out.columns) == ["id", "probabilities_0", "probabilities_1", "probabilities_2"]
