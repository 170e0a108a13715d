"""The ``modelport batch`` command, run as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import modelport
from modelport.batch.plan import workdir_for
from modelport.batch.sinks import committed
from modelport.registry import Registry
from tests.batch.conftest import frame
from tests.conftest import make_mlp_onnx


def run(home: Path, *args: str, wait: bool = True) -> Any:
    cmd = [sys.executable, "-m", "modelport", "--home", str(home), "batch", *args]
    env = {**os.environ, "COLUMNS": "200"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_summary_and_errors_file(reg: Registry, home: Path, tmp_path: Path) -> None:
    df = frame(30)
    df.loc[4, "a"] = None
    df.to_parquet(tmp_path / "in.parquet")
    result = run(home, "mlp", "--input", str(tmp_path / "in.parquet"), "--output",
                 str(tmp_path / "out.csv"), "--id-column", "id", "--chunk-rows", "7")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scored 29 rows, 1 bad" in result.stdout
    assert f"output: {tmp_path / 'out.csv'}" in result.stdout
    assert f"bad rows: {tmp_path / 'out.csv.errors.csv'}" in result.stdout
    assert "rows/s" in result.stderr  # the progress bar
    lines = (tmp_path / "out.csv.errors.csv").read_text().splitlines()
    assert lines == ["row,file,file_row,reason", "4,in.parquet,4,missing value in column 'a'"]


def test_an_empty_input_gives_an_empty_output(reg: Registry, home: Path, tmp_path: Path) -> None:
    """No rows is not an error: the output has no rows and the columns a full one would have."""
    (tmp_path / "empty.csv").write_text("id,a,b,c,d\n")
    result = run(home, "mlp", "-i", str(tmp_path / "empty.csv"), "-o", str(tmp_path / "o.csv"),
                 "--id-column", "id", "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scored 0 rows, 0 bad" in result.stdout
    header = (tmp_path / "o.csv").read_text().splitlines()
    assert header == ['"id","probabilities_0","probabilities_1","probabilities_2"']


BAD = [
    ("-i {d}/missing.csv -o {d}/o.parquet", "input {d}/missing.csv does not exist"),
    ("-i {d}/in.csv -o {d}/o.parquet --columns a,b,zz,d", "unknown column(s) ['zz'] in --columns"),
    ("-i {d}/in.txt -o {d}/o.parquet", "unsupported input format 'in.txt'"),
    ("-i {d}/in.csv -o {d}/o.json", "unsupported output format 'o.json'"),
    ("-i {d}/in.csv -o {d}/o.csv --on-error ignore", "--on-error must be skip or fail"),
    ("-i {d}/bad.csv -o {d}/o.csv --on-error fail",
     "row 1 (bad.csv, row 1): non-numeric value 'oops' in column 'b'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_error(reg: Registry, home: Path, tmp_path: Path, args: str,
                                     message: str) -> None:  # fmt: skip
    frame(5).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "in.txt").write_text("1,2,3,4\n")
    (tmp_path / "empty.csv").write_text("id,a,b,c,d\n")
    (tmp_path / "bad.csv").write_text("a,b,c,d\n1,2,3,4\n1,oops,3,4\n")
    result = run(home, "mlp", *args.format(d=tmp_path).split())
    assert result.returncode == 1
    lines = result.stderr.splitlines()  # one line, no blank line left by the progress bar
    assert len(lines) == 1 and lines[0].startswith(f"error: {message.format(d=tmp_path)}")
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.parquet").exists()


def test_on_a_terminal_a_failed_job_erases_its_bar_before_the_error(
    home: Path, reg: Registry, tmp_path: Path
) -> None:
    import pty

    (tmp_path / "bad.csv").write_text("a,b,c,d\n1,2,3,4\n1,oops,3,4\n")
    leader, follower = pty.openpty()
    cmd = [sys.executable, "-m", "modelport", "--home", str(home), "batch", "mlp",
           "-i", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "o.csv"),
           "--on-error", "fail"]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
                            stdin=follower, stdout=follower, stderr=follower)  # fmt: skip
    os.close(follower)
    screen = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not data:
            break
        screen += data
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    text = screen.decode()
    assert "rows/s" in text  # a live bar was drawn
    before_error = re.sub(r"(\x1b\[[0-9;]*m)+$", "", text[: text.index("error:")])
    assert before_error.endswith("\x1b[2K")  # and erased, line and all, before the error


def test_killed_job_resumes_to_the_same_output(home: Path, tmp_path: Path) -> None:
    """SIGKILL a real job half-way, run the same command again: the output is byte for byte the
    one an uninterrupted run writes, with no row lost or repeated."""
    with Registry.open(home) as registry:
        modelport.register(make_mlp_onnx(tmp_path / "m.onnx", n_in=16, n_hidden=256), "m",
                           registry=registry)  # fmt: skip
    n, chunk_rows = 40_000, 250  # 160 chunks, each committed with fsyncs
    x = np.random.default_rng(3).standard_normal((n, 16)).astype(np.float32)
    columns = {f"f{j}": x[:, j] for j in range(16)}
    columns["f5"] = pa.array(np.where(np.arange(n) % 997 == 0, np.nan, x[:, 5]), from_pandas=True)
    table = pa.table({"id": np.arange(n) * 10, **columns})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=4096)
    args = ["m", "--input", str(tmp_path / "in.parquet"), "--id-column", "id",
            "--chunk-rows", str(chunk_rows), "--batch-size", "100", "--quiet"]  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = run(home, *args, "--output", str(tmp_path / "a" / "out.parquet"))
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "b" / "out.parquet"
    job = run(home, *args, "--output", str(out), wait=False)
    deadline = time.monotonic() + 60
    while len(committed(workdir_for(out))) < 40 and time.monotonic() < deadline:
        assert job.poll() is None, "the job ended before it could be killed"
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    job.wait()
    done = committed(workdir_for(out))
    assert 40 <= len(done) < 160 and not out.exists()

    again = run(home, *args, "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert "chunks resumed" in again.stdout
    assert out.read_bytes() == (tmp_path / "a" / "out.parquet").read_bytes()
    assert (tmp_path / "b" / "out.parquet.errors.csv").read_text() == \
        (tmp_path / "a" / "out.parquet.errors.csv").read_text()  # fmt: skip
    ids = pq.read_table(out).column("id").to_numpy()
    assert np.array_equal(ids, table.column("id").to_numpy()[np.arange(n) % 997 != 0])
    assert not workdir_for(out).exists()
