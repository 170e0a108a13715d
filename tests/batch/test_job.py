from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.batch import predict_batch
from modelport.batch.plan import workdir_for
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
    # the first chunk is one model batch (50 rows), then 128 rows a chunk
    assert (summary.rows, summary.errors, summary.chunks) == (1000, 0, 9)
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
    x = features(100)  # an NPY output streams like the others
    summary = predict_batch("mlp", x, tmp_path / "out.npy", registry=reg, chunk_rows=30)
    assert summary.rows == 100
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected(reg, x))
    assert not list(tmp_path.glob(".*"))  # no work folder left behind


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


def test_unknown_columns_and_outputs_are_refused(reg: Registry, tmp_path: Path) -> None:
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


def test_feature_columns_score_exactly_like_the_model(reg: Registry, tmp_path: Path) -> None:
    """Feature columns reach ONNX Runtime feature-major (no transpose) after the first chunk,
    which the model scores as it is, taking rows: the very same numbers either way."""
    from modelport.batch import scorer

    df = frame(1000, seed=3)
    write_input(df, tmp_path / "in.parquet")
    loaded = []
    real = scorer.load_feature_major
    scorer.load_feature_major = lambda spec: loaded.append(real(spec)) or loaded[-1]
    try:
        predict_batch("mlp", tmp_path / "in.parquet", tmp_path / "out.parquet", registry=reg,
                      chunk_rows=300, batch_size=64)  # fmt: skip
    finally:
        scorer.load_feature_major = real
    assert [columnar for _, columnar in loaded] == [{"input"}]
    got = probabilities(pd.read_parquet(tmp_path / "out.parquet"))
    assert np.array_equal(got, expected(reg, df[FEATURES].to_numpy(np.float32)))


@pytest.mark.parametrize("scorers", [1, 3])
def test_any_number_of_scoring_threads_keeps_input_order(
    reg: Registry, tmp_path: Path, monkeypatch, scorers: int
) -> None:
    from modelport.batch import api
    from modelport.batch.executors import LocalExecutor

    monkeypatch.setattr(api, "LocalExecutor", lambda _: LocalExecutor(scorers))
    df = frame(900, seed=4)
    write_input(df, tmp_path / "in.parquet")
    summary = predict_batch("mlp", tmp_path / "in.parquet", tmp_path / "out.csv", registry=reg,
                            id_column="id", chunk_rows=50, batch_size=16)  # fmt: skip
    assert (summary.rows, summary.chunks) == (900, 1 + 18)  # 16 rows, then 50 a chunk
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out["id"]) == list(df["id"])
    assert np.allclose(probabilities(out), expected(reg, df[FEATURES].to_numpy(np.float32)),
                       atol=1e-6)  # fmt: skip


def test_a_part_broken_by_a_crash_is_scored_again(reg: Registry, tmp_path: Path,
                                                   monkeypatch) -> None:  # fmt: skip
    """Parts are renamed into place without an fsync; a part that did not reach the disk whole
    (a machine crash) is found on resume and its chunk scored again."""
    from modelport.batch import scorer

    df = frame(400, seed=5)
    write_input(df, tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    real = scorer.predict_in_batches
    calls = []

    def dies_at_the_sixth_chunk(*args):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(scorer, "predict_in_batches", dies_at_the_sixth_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict_batch("mlp", tmp_path / "in.parquet", out, registry=reg, id_column="id",
                      chunk_rows=40)  # fmt: skip
    monkeypatch.setattr(scorer, "predict_in_batches", real)
    parts = sorted(workdir_for(out).glob("part-*.arrow"))
    assert len(parts) >= 3 and not out.exists()
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # cut short
    parts[2].with_suffix(".errors.json").write_text("[[1, ")  # its error list too
    summary = predict_batch("mlp", tmp_path / "in.parquet", out, registry=reg, id_column="id",
                            chunk_rows=40)  # fmt: skip
    assert summary.resumed == len(parts) - 2 and summary.rows == 400
    kept = pd.read_parquet(out)
    assert list(kept["id"]) == list(df["id"])
    assert np.allclose(probabilities(kept), expected(reg, df[FEATURES].to_numpy(np.float32)),
                       atol=1e-6)  # fmt: skip


def test_parquet_output_stores_scores_plain_and_ids_compressed(reg: Registry,
                                                               tmp_path: Path) -> None:  # fmt: skip
    import pyarrow.parquet as pq

    write_input(frame(300), tmp_path / "in.parquet")
    predict_batch("mlp", tmp_path / "in.parquet", tmp_path / "out.parquet", registry=reg,
                  id_column="id", chunk_rows=100)  # fmt: skip
    parquet = pq.ParquetFile(tmp_path / "out.parquet")
    schema = parquet.schema_arrow
    assert schema.names == ["id", "probabilities_0", "probabilities_1", "probabilities_2"]
    assert schema.field("id").nullable and not schema.field("probabilities_0").nullable
    group = parquet.metadata.row_group(0)
    ids, scores = group.column(0), group.column(1)
    assert ids.compression == "SNAPPY" and ids.has_dictionary_page and ids.is_stats_set
    assert scores.compression == "UNCOMPRESSED" and not scores.has_dictionary_page
    assert parquet.metadata.num_rows == 300


def test_output_is_synced_as_it_grows_and_the_old_one_is_released(
    reg: Registry, tmp_path: Path, monkeypatch
) -> None:
    import os
    import time

    from modelport.batch import outputs

    write_input(frame(600), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"an older output" * 1000)
    synced = []
    sync = os.fdatasync
    monkeypatch.setattr(outputs, "_SYNC_EVERY", 1)  # every chunk's bytes, as they are written
    monkeypatch.setattr(outputs.os, "fdatasync", lambda fd: synced.append(os.readlink(
        f"/proc/self/fd/{fd}")) or sync(fd))  # fmt: skip
    predict_batch("mlp", tmp_path / "in.parquet", out, registry=reg, chunk_rows=100)
    assert len(synced) == 6 and all(p.endswith(".tmp") for p in synced)
    assert len(pd.read_parquet(out)) == 600

    def holds_old_output() -> bool:
        links = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:  # closed meanwhile
                pass
        return f"{out} (deleted)" in links

    deadline = time.monotonic() + 5
    while holds_old_output() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not holds_old_output()  # the replaced file is closed (its blocks freed) off the path


@pytest.mark.parametrize("source", ["in.csv", "in.parquet", "in.npy", "memory", "frame"])
@pytest.mark.parametrize("sink", ["out.parquet", "out.csv", "out.npy", None])
def test_zero_rows_give_an_empty_output_of_the_right_shape(
    reg: Registry, tmp_path: Path, source: str, sink: str | None
) -> None:
    """As everywhere else in modelport: no rows in, no rows out, with the columns (or the shape)
    a full answer would have; not an error."""
    df = frame(0)
    id_column = "id" if source in ("in.csv", "in.parquet", "frame") and sink != "out.npy" else None
    if source == "in.npy":
        np.save(tmp_path / source, np.zeros((0, 4), np.float32))
        data = tmp_path / source
    elif source == "memory":
        data = np.zeros((0, 4), np.float32)
    elif source == "frame":
        data = df
    else:
        data = write_input(df, tmp_path / source)
    if sink is None and isinstance(data, Path):
        return  # file inputs need an output
    out = None if sink is None else tmp_path / sink
    columns = FEATURES if source in ("in.csv", "in.parquet", "frame") else None
    summary = predict_batch("mlp", data, out, registry=reg, id_column=id_column, columns=columns)
    assert (summary.rows, summary.errors, summary.chunks) == (0, 0, 1)
    names = ([id_column] if id_column else []) + [f"probabilities_{j}" for j in range(3)]
    if sink is None:
        assert summary.outputs["probabilities"].shape == (0, 3)
    elif sink == "out.npy":
        got = np.load(out)
        assert got.shape == (0, 3) and got.dtype == np.float32
    else:
        got = pd.read_parquet(out) if sink == "out.parquet" else pd.read_csv(out)
        assert list(got.columns) == names and len(got) == 0
    assert not list(tmp_path.glob(".out*"))  # no work folder left behind


def test_until_its_first_part_a_job_reads_and_scores_one_batch_alone(
    reg: Registry, tmp_path: Path, monkeypatch
) -> None:
    """The first chunk (one model batch) is read and scored by the model as loaded, taking rows,
    before anything else is read or the graph rewritten; then the other chunks are read ahead
    and scored feature-major, one per scorer, side by side, giving the same numbers."""
    import threading
    import time

    from modelport.batch import api, reader, scorer
    from modelport.batch.executors import LocalExecutor

    monkeypatch.setattr(api, "LocalExecutor", lambda _: LocalExecutor(2))
    events: list[tuple] = []
    real_read, real_score = reader.ChunkReader.read, scorer.Scorer.score
    real_feature_major = scorer.load_feature_major

    def read(self, chunk):
        events.append(("read", chunk.index))
        return real_read(self, chunk)

    def score(self, chunk, data):
        events.append(("score", chunk.index, tuple(self.columnar)))
        try:
            return real_score(self, chunk, data)
        finally:
            events.append(("scored", chunk.index, threading.get_ident()))

    def feature_major(spec):
        events.append(("rewrite",))
        runtime, columnar = real_feature_major(spec)
        predict = runtime.predict

        def slow(inputs):  # calls long enough for both scorers to take a chunk
            time.sleep(0.005)
            return predict(inputs)

        runtime.predict = slow
        return runtime, columnar

    monkeypatch.setattr(reader.ChunkReader, "read", read)
    monkeypatch.setattr(scorer.Scorer, "score", score)
    monkeypatch.setattr(scorer, "load_feature_major", feature_major)
    df = frame(1000, seed=6)
    write_input(df, tmp_path / "in.parquet")
    summary = predict_batch("mlp", tmp_path / "in.parquet", tmp_path / "out.parquet",
                            registry=reg, chunk_rows=200, batch_size=50)  # fmt: skip
    assert summary.chunks == 6  # 50 rows, then 200 a chunk
    first = next(i for i, e in enumerate(events) if e[0] == "scored")
    assert events[: first + 1] == [("read", 0), ("score", 0, ()), events[first]]
    later = events[first + 1 :]
    assert later.count(("rewrite",)) == 1
    assert sorted(e[1] for e in later if e[0] == "read") == [1, 2, 3, 4, 5]
    assert [e[2] for e in later if e[0] == "score"] == [("input",)] * 5
    assert len({e[2] for e in later if e[0] == "scored"}) == 2  # side by side
    got = probabilities(pd.read_parquet(tmp_path / "out.parquet"))
    assert np.array_equal(got, expected(reg, df[FEATURES].to_numpy(np.float32)))


def test_a_job_of_one_batch_loads_the_model_once_as_it_is(
    reg: Registry, tmp_path: Path, monkeypatch
) -> None:
    """No chunk is left after the first: the feature-major copy is never made."""
    from modelport.batch import scorer

    calls = []
    monkeypatch.setattr(scorer, "load_feature_major", lambda spec: calls.append(spec))
    df = frame(40, seed=8)
    write_input(df, tmp_path / "in.parquet")
    summary = predict_batch("mlp", tmp_path / "in.parquet", tmp_path / "out.parquet",
                            registry=reg, batch_size=64)  # fmt: skip
    assert (summary.rows, summary.chunks, calls) == (40, 1, [])
    got = probabilities(pd.read_parquet(tmp_path / "out.parquet"))
    assert np.array_equal(got, expected(reg, df[FEATURES].to_numpy(np.float32)))
