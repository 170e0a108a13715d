from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelport.batch import sources
from modelport.batch.plan import chunks_of
from modelport.batch.reader import ChunkReader
from modelport.batch.sources import expand, plan_file
from modelport.errors import InvalidInput
from tests.batch.conftest import frame


def test_expand_file_folder_and_glob(tmp_path: Path) -> None:
    for i in range(3):
        frame(5).to_csv(tmp_path / f"part{i}.csv", index=False)
    (tmp_path / "_SUCCESS").write_text("")
    one = expand(tmp_path / "part1.csv")
    assert one == [(tmp_path / "part1.csv").absolute()]
    assert [p.name for p in expand(tmp_path)] == ["part0.csv", "part1.csv", "part2.csv"]
    assert [p.name for p in expand(str(tmp_path / "part[02].csv"))] == ["part0.csv", "part2.csv"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "does not exist"),
        (lambda d: (d / "x.xlsx").write_text("1") and d / "x.xlsx", "unsupported input format"),
        (lambda d: str(d / "nothing-*.csv"), "no input files match"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no .csv"),
    ],
)
def test_expand_refuses_bad_inputs(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        expand(make(tmp_path))


def test_expand_refuses_mixed_formats(tmp_path: Path) -> None:
    frame(3).to_csv(tmp_path / "a.csv", index=False)
    frame(3).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidInput, match="mixes formats"):
        expand(tmp_path)


@pytest.mark.parametrize("trailing_newline", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 7, 50, 1000])
def test_csv_chunks_cover_every_row_once(tmp_path: Path, chunk_rows: int,
                                         trailing_newline: bool) -> None:  # fmt: skip
    df = frame(103)
    text = df.to_csv(index=False)
    path = tmp_path / "in.csv"
    path.write_text(text if trailing_newline else text.rstrip("\n"))
    info = plan_file(path, chunk_rows)
    assert info.rows == 103
    assert info.columns == {"id": "string", "a": "number", "b": "number", "c": "number",
                            "d": "number"}  # fmt: skip
    reader = ChunkReader()
    tables = [reader.read(c) for c in chunks_of([info])]
    assert all(t.num_rows <= chunk_rows for t in tables)
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    assert ids == list(df["id"])


def test_parquet_chunks_across_row_groups_in_any_order(tmp_path: Path) -> None:
    df = frame(1000)
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=64)
    info = plan_file(path, 150)
    chunks = chunks_of([info])
    assert info.rows == 1000 and len(chunks) == 7
    reader = ChunkReader(["id", "a"])
    in_order = [reader.read(c).column("id").to_pylist() for c in chunks]
    assert [i for part in in_order for i in part] == list(df["id"])
    shuffled = [chunks[5], chunks[2], chunks[3], chunks[0]]  # how a resumed job or a worker reads
    for chunk in shuffled:
        assert reader.read(chunk).column("id").to_pylist() == list(
            df["id"][chunk.start : chunk.stop]
        )


def test_jsonl_and_npy_chunks(tmp_path: Path) -> None:
    df = frame(20)
    df.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    info = plan_file(tmp_path / "in.jsonl", 6)
    assert info.rows == 20 and set(info.columns) == {"id", "a", "b", "c", "d"}
    tables = [ChunkReader().read(c) for c in chunks_of([info])]
    assert np.allclose(np.concatenate([t.column("a").to_numpy() for t in tables]), df["a"])
    x = np.arange(30.0).reshape(10, 3)
    np.save(tmp_path / "in.npy", x)
    info = plan_file(tmp_path / "in.npy", 4)
    assert info.shape == (10, 3)
    parts = [ChunkReader().read(c) for c in chunks_of([info])]
    assert np.array_equal(np.concatenate(parts), x)


def test_plan_refuses_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InvalidInput, match="is empty"):
        plan_file(tmp_path / "empty.csv", 10)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInput, match="cannot read"):
        plan_file(tmp_path / "bad.parquet", 10)
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    with pytest.raises(InvalidInput, match="not numbers"):
        plan_file(tmp_path / "text.npy", 10)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    rows=st.lists(st.lists(st.integers(-999, 999), min_size=2, max_size=2), max_size=40),
    chunk_rows=st.integers(1, 12),
    first_rows=st.integers(1, 12),
    trailing_newline=st.booleans(),
    jsonl=st.booleans(),
    scan_block=st.sampled_from([1, 3, 17, 1 << 22]),
)
def test_any_line_file_is_cut_into_chunks_covering_each_row_once(
    tmp_path: Path,
    rows: list[list[int]],
    chunk_rows: int,
    first_rows: int,
    trailing_newline: bool,
    jsonl: bool,
    scan_block: int,
) -> None:
    """A file's first chunk holds ``first_rows`` rows (at most ``chunk_rows``), the others
    ``chunk_rows``; every row is in exactly one."""
    if jsonl:
        path = tmp_path / "in.jsonl"
        lines = [f'{{"a": {a}, "b": {b}}}' for a, b in rows]
    else:
        path = tmp_path / "in.csv"
        lines = ["a,b"] + [f"{a},{b}" for a, b in rows]
    text = "\n".join(lines)
    path.write_text(text + "\n" if trailing_newline and lines else text)
    if not lines:
        return
    saved, sources._SCAN_BLOCK = sources._SCAN_BLOCK, scan_block  # boundaries across blocks
    try:
        info = plan_file(path, chunk_rows, first_rows)
    finally:
        sources._SCAN_BLOCK = saved
    assert info.rows == len(rows)
    chunks = chunks_of([info])
    first = min(first_rows, chunk_rows)
    assert [c.start for c in chunks] == ([0, *range(first, len(rows), chunk_rows)] if rows else [])
    assert [(c.start, c.stop) for c in chunks] == [
        (start, stop) for start, stop, _, _ in sources.row_ranges(len(rows), chunk_rows, first)
    ]
    reader = ChunkReader(["a", "b"])
    got = [
        [a, b]
        for c in chunks
        for t in [reader.read(c)]
        for a, b in zip(t.column("a").to_pylist(), t.column("b").to_pylist(), strict=True)
    ]
    assert got == rows


def test_a_sequential_reader_decodes_several_parquet_chunks_at_once(
    tmp_path: Path, monkeypatch
) -> None:
    import polars as pl

    frames = [frame(1000), frame(400, seed=1)]
    for k, df in enumerate(frames):
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / f"{k}.parquet",
                       row_group_size=300)  # fmt: skip
    chunks = chunks_of([plan_file(tmp_path / f"{k}.parquet", 150) for k in range(2)])
    decodes = []
    scan = pl.scan_parquet
    monkeypatch.setattr(pl, "scan_parquet", lambda *a, **k: decodes.append(a[0]) or scan(*a, **k))
    reader = ChunkReader(["id", "a"], span=3)
    ids = [reader.read(c).column("id").to_pylist() for c in chunks]
    assert [i for part in ids for i in part] == list(frames[0]["id"]) + list(frames[1]["id"])
    # each file: its first chunk alone, then three chunks per decode (7 + 3 chunks)
    assert len(decodes) == (1 + 2) + (1 + 1)
    for chunk in [chunks[8], chunks[2], chunks[3], chunks[9], chunks[0]]:  # any order still works
        df = frames[0] if chunk.file.endswith("0.parquet") else frames[1]
        assert reader.read(chunk).column("id").to_pylist() == list(
            df["id"][chunk.start : chunk.stop]
        )


def test_a_first_parquet_chunk_of_numbers_is_read_as_polars_reads_the_others(
    tmp_path: Path,
) -> None:
    """pyarrow, which planning imported, reads a file's first chunk when every column read holds
    numbers: the very table polars gives (types included), so the output's schema is the same
    whichever reader gave its first chunk. With other columns (strings) polars reads it too."""
    import polars as pl

    from modelport.batch.reader import _first_numbers

    df = frame(300)
    df["n"] = np.arange(300, dtype=np.int32)
    df["flag"] = df["n"] % 2 == 0
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=40)
    info = plan_file(path, 100, 70)  # the first chunk spans two row groups
    first = chunks_of([info])[0]
    assert (first.start, first.stop) == (0, 70)
    for columns in (["a", "b", "n", "flag"], ["id", "a"]):
        assert (_first_numbers(first, columns) is None) == ("id" in columns)
        got = ChunkReader(columns).read(first)
        want = pl.scan_parquet(path).select(columns).slice(0, 70).collect()
        assert got.equals(want.to_arrow(compat_level=pl.CompatLevel.oldest()), check_metadata=True)
        assert got.schema.metadata is None
