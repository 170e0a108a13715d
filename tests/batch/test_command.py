"""``modelport batch`` read without the full CLI: the same options, the same job, a lean start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelport.batch import command
from modelport.registry import Registry
from tests.batch.conftest import FEATURES, expected, features

LINES = [
    "batch mlp -i in.npy -o out.npy",
    "batch mlp --input=in.csv --output out.parquet --quiet --batch-size 64 --chunk-rows=100",
    "--home /h batch mlp -o o.csv -i in.csv --columns a,b --columns c --id-column id -q",
    "--home=/h batch m@prod -i x -o y --memory-budget 2GiB --on-error fail --errors e.csv "
    "--backend onnxruntime --dask-workers 2 --dask-scheduler tcp://h:1",
]
REFUSED = [
    "batch mlp -i in.npy", "batch -i in.npy -o out.npy", "batch mlp -i a -o b --help",
    "batch mlp -i a -o b --chunk-rows many", "batch mlp -i a -o b --chunk-rows -5",
    "batch mlp -i a -o b -qi x", "batch mlp -i a -o b --unknown 1", "batch mlp extra -i a -o b",
    "batch mlp -i a -o b --quiet=yes", "batch mlp -i a -o b -i c", "batch mlp -i a -o b --",
    "batch mlp -i a -o", "list", "--home /h list", "batch mlp -i -o b", "batch mlp -i a -o ''",
]  # fmt: skip


def _typer_batch_options() -> dict[str, tuple[str, type]]:
    import typer

    from modelport.cli import app

    group = typer.main.get_command(app)
    options = {}
    for param in group.commands["batch"].params:
        if param.param_type_name == "argument":
            assert param.name == "ref" and param.required
            continue
        kind = list if param.multiple else param.type_descriptor.annotation
        assert param.is_flag == (kind is bool)
        for flag in param.opts + param.secondary_opts:
            options[flag] = (param.name, kind)
        if param.name not in ("input", "output"):
            assert command.DEFAULTS[param.name] == param.default, param.name
        else:
            assert param.required
    return options


def test_the_quick_options_are_the_typer_command_options() -> None:
    assert command.OPTIONS == _typer_batch_options()


@pytest.mark.parametrize("line", LINES)
def test_a_plain_line_reads_as_typer_reads_it(line: str, monkeypatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelport.cli import app
    from modelport.cli.common import state

    calls = []
    monkeypatch.setattr(command, "run", lambda *args, **kw: calls.append((args, kw)))
    monkeypatch.setattr(state, "overrides", {})
    monkeypatch.setattr(state, "_settings", None)
    argv = line.split()
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    [(args, kw)] = calls
    settings, *positional = args
    quick = command.quick_args(argv)
    assert quick.pop("settings") == ({"home": Path("/h")} if "home" in line else {})
    assert dict(zip(["ref", "input", "output"], positional, strict=True)) | kw == quick
    if "home" in line:
        assert settings.home == Path("/h")


@pytest.mark.parametrize("line", REFUSED)
def test_anything_else_is_left_to_typer(line: str) -> None:
    argv = [a.strip("'") for a in line.split()]
    assert command.quick_args(argv) is None


def test_batch_option_defaults_from_the_environment_are_left_to_typer(monkeypatch) -> None:
    monkeypatch.setenv("MODELPORT_BATCH__CHUNK_ROWS", "10")
    assert command.quick_args("batch mlp -i a -o b".split()) is None


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_the_first_part_is_committed_with_a_lean_import_set(
    reg: Registry, home: Path, tmp_path: Path, fmt: str
) -> None:
    """Up to the first committed part, the job imports no CLI framework, no SQLAlchemy, no
    pydantic, and for feature columns neither the onnx package (the graph rewrite comes after)
    nor polars (pyarrow reads a first chunk of numbers), nor the text and in-memory sources, nor
    the standard modules only writing blobs needs; NumPy's OpenBLAS was loaded with one thread.
    A structural check; benchmarks/batch.py times it."""
    import pandas as pd

    x = features(5000)
    source, output = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    if fmt == "npy":
        np.save(source, x)
    else:
        pd.DataFrame(x, columns=FEATURES).to_parquet(source)
    heavy = ("typer", "click", "rich", "sqlalchemy", "pydantic", "pydantic_settings", "onnx",
             "polars", "pandas", "torch", "modelport.batch.text", "modelport.batch.memory",
             "shutil", "tempfile")  # fmt: skip
    code = (
        "import os, runpy, sys\n"
        "from modelport.batch import sinks\n"
        "real, seen = sinks.Parts.write, []\n"
        "def write(self, scored):\n"
        "    if not seen:\n"
        f"        seen.append(sorted(m for m in {heavy!r} if m in sys.modules))\n"
        "        seen.append(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
        "    return real(self, scored)\n"
        "sinks.Parts.write = write\n"
        f"sys.argv = ['modelport', '--home', {str(home)!r}, 'batch', 'mlp', '-i', "
        f"{str(source)!r}, '-o', {str(output)!r}, '--quiet', '--chunk-rows', '1000']\n"
        "try:\n"
        "    runpy.run_module('modelport', run_name='__main__')\n"
        "finally:\n"
        "    print('AT THE FIRST PART', *seen, flush=True)\n"
    )
    reg.path("mlp")  # checked out, as after a first job (laying it out needs shutil, tempfile)
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith("modelport_") and k != "OPENBLAS_NUM_THREADS"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "scored 5,000 rows, 0 bad" in out.stdout
    assert "AT THE FIRST PART [] 1" in out.stdout
    got = np.load(output) if fmt == "npy" else pd.read_parquet(output).to_numpy()
    assert np.array_equal(got, expected(reg, x))


@pytest.mark.parametrize(("line", "preset", "expected"), [
    ("batch mlp -i a.npy -o b.npy", None, "1"),
    ("batch mlp -i a.npy -o b.npy", "4", "4"),  # the user's setting stands
    ("batch mlp -i a.parquet -o b.parquet --dask-workers 2", None, None),
    ("batch mlp -i a.parquet -o b.parquet --dask-scheduler tcp://h:1", None, None),
])  # fmt: skip
def test_a_local_job_starts_openblas_with_one_thread(
    line: str, preset: str | None, expected: str | None, monkeypatch
) -> None:
    """A job scored here does no BLAS; a Dask job keeps the default, which its workers inherit."""
    from modelport import entry

    if preset is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", preset)
    seen = []
    monkeypatch.setattr(command, "run", lambda *a, **kw: seen.append(
        os.environ.get("OPENBLAS_NUM_THREADS")))  # fmt: skip
    entry._batch(command.quick_args(line.split()))
    assert seen == [expected]
