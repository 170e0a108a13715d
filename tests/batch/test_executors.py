"""The Dask path against a real ``dask.distributed.LocalCluster`` of two worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelport.batch import predict_batch
from modelport.batch.executors import worker_loads
from modelport.errors import InvalidInput
from modelport.registry import Registry
from tests.batch.conftest import FEATURES, expected, frame, probabilities


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as local, Client(local) as client:  # fmt: skip
        yield local, client


def write_folder(tmp_path: Path, n_files: int = 2, rows: int = 300) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path / "in"
    folder.mkdir()
    frames = []
    for i in range(n_files):
        df = frame(rows, seed=i)
        df["id"] = [f"f{i}-{j}" for j in range(rows)]
        if i == 1:
            df.loc[17, "c"] = None  # one bad row, found on a worker
        df.to_parquet(folder / f"part-{i}.parquet", index=False)
        frames.append(df)
    return folder, pd.concat(frames, ignore_index=True)


def test_dask_workers_score_their_own_chunks(reg: Registry, tmp_path: Path, cluster) -> None:
    local, client = cluster
    folder, df = write_folder(tmp_path)
    out = tmp_path / "dask.parquet"
    summary = predict_batch("mlp", folder, out, registry=reg, id_column="id", chunk_rows=40,
                            dask_scheduler=local.scheduler_address)  # fmt: skip
    assert (summary.rows, summary.errors, summary.chunks) == (599, 1, 16)
    assert len(summary.workers) == 2  # both worker processes wrote parts
    worker_pids = {pid for pid, _ in client.run(worker_loads).values()}
    assert {int(w.rsplit(":", 1)[1]) for w in summary.workers} <= worker_pids
    assert os.getpid() not in worker_pids
    # each worker loaded the model once for its 8-odd chunks
    assert sorted(loads for _, loads in client.run(worker_loads).values()) == [1, 1]

    local_out = tmp_path / "local.parquet"
    predict_batch("mlp", folder, local_out, registry=reg, id_column="id", chunk_rows=40)
    assert out.read_bytes() == local_out.read_bytes()  # same parts, same order, same bytes
    got = pd.read_parquet(out)
    good = df.drop(index=300 + 17)
    assert list(got["id"]) == list(good["id"])
    assert np.allclose(probabilities(got), expected(reg, good[FEATURES].to_numpy(np.float32)),
                       atol=1e-6)  # fmt: skip
    errors = pd.read_csv(str(out) + ".errors.csv")
    assert errors.values.tolist() == [[317, "part-1.parquet", 17, "missing value in column 'c'"]]


def test_dask_fail_stops_the_job(reg: Registry, tmp_path: Path, cluster) -> None:
    local, _ = cluster
    folder, _ = write_folder(tmp_path)
    with pytest.raises(InvalidInput, match=r"row 317 \(part-1.parquet, row 17\)"):
        predict_batch("mlp", folder, tmp_path / "out.csv", registry=reg, chunk_rows=50,
                      on_error="fail", dask_scheduler=local.scheduler_address)  # fmt: skip
    assert not (tmp_path / "out.csv").exists()


def test_cli_starts_a_local_cluster(reg: Registry, home: Path, tmp_path: Path) -> None:
    folder, df = write_folder(tmp_path, n_files=1, rows=200)
    out = tmp_path / "out.csv"
    result = subprocess.run(
        [sys.executable, "-m", "modelport", "--home", str(home), "batch", "mlp", "--input",
         str(folder / "*.parquet"), "--output", str(out), "--chunk-rows", "50",
         "--dask-workers", "2", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scored 200 rows, 0 bad" in result.stdout
    got = pd.read_csv(out)
    assert np.allclose(probabilities(got), expected(reg, df[FEATURES].to_numpy(np.float32)),
                       atol=1e-6)  # fmt: skip


def test_in_memory_data_is_not_sent_to_dask(reg: Registry) -> None:
    with pytest.raises(InvalidInput, match="Dask workers read files"):
        predict_batch("mlp", np.zeros((3, 4), np.float32), registry=reg, dask_workers=2)
