"""The real command line, in subprocesses, against a registry in a temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_mlp_onnx


@pytest.fixture
def cli(tmp_path: Path):
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path / "home"), "MODELPORT_USER": "alice"}

    def run(*args: str, ok: bool = True, **variables: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "modelport", *args], env={**env, **variables},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


def _error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_version_and_help_do_not_import_frameworks() -> None:
    code = (
        "import sys, runpy; sys.argv=['modelport','--version'];\n"
        "try: runpy.run_module('modelport', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "heavy = [m for m in ('torch','onnxruntime','onnx','sqlalchemy','sklearn','tensorflow') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "modelport 0." in out.stdout
    assert "HEAVY []" in out.stdout
    help_out = subprocess.run([sys.executable, "-m", "modelport", "--help"], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    assert help_out.returncode == 0 and "register" in help_out.stdout


def test_register_list_show_alias_rollback_history(cli, tmp_path: Path) -> None:
    m1 = make_mlp_onnx(tmp_path / "m1.onnx", seed=1)
    m2 = make_mlp_onnx(tmp_path / "m2.onnx", seed=2)
    out = cli("register", str(m1), "--name", "digits", "--alias", "production",
              "--metric", "accuracy=0.97", "--tag", "team=vision", "--json")  # fmt: skip
    first = json.loads(out.stdout)
    assert first["version"] == 1 and first["aliases"] == ["production"]
    assert first["metrics"] == {"accuracy": 0.97} and first["created_by"] == "alice"
    assert "registered digits:2" in cli("register", str(m2), "--name", "digits").stdout

    models = json.loads(cli("list", "--json").stdout)
    assert models[0]["name"] == "digits" and models[0]["latest"] == 2
    assert models[0]["aliases"] == {"production": 1}
    versions = json.loads(cli("list", "digits", "--json").stdout)
    assert [v["version"] for v in versions] == [1, 2]

    cli("alias", "set", "digits", "production", "2")
    shown = json.loads(cli("show", "digits@production", "--json").stdout)
    assert shown["version"] == 2 and shown["signature"]["inputs"][0]["shape"] == [-1, 4]
    assert "digits@production -> 1 (rolled back)" in cli("rollback", "digits", "production").stdout
    history = json.loads(cli("history", "digits", "--alias", "production", "--json").stdout)
    assert [(h["action"], h["version"]) for h in history] == [
        ("alias_set", 1), ("alias_set", 2), ("rollback", 1)]  # fmt: skip
    assert all(h["actor"] == "alice" for h in history)
    table = cli("history", "digits").stdout
    assert "rolled back alias production: 2 -> 1" in table
    assert "digits:1" in cli("show", "digits@production").stdout
    cli("alias", "remove", "digits", "production")
    assert json.loads(cli("list", "--json").stdout)[0]["aliases"] == {}


def test_export_delete_verify_gc(cli, tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "m.onnx")
    cli("register", str(model), "--name", "m", "--alias", "production")
    cli("register", str(make_mlp_onnx(tmp_path / "n.onnx", seed=9)), "--name", "m")
    cli("export", "m:1", str(tmp_path / "copy.onnx"))
    assert (tmp_path / "copy.onnx").read_bytes() == model.read_bytes()
    assert "production" in _error(cli("delete", "m:1", ok=False))
    assert "deleted m:2" in cli("delete", "m:2").stdout
    assert json.loads(cli("gc", "--grace", "0", "--json").stdout)["removed_blobs"] == 1
    assert json.loads(cli("verify", "--json").stdout) == {"ok": True, "problems": []}
    home = tmp_path / "home" / "blobs" / "sha256"
    blob = next(p for p in home.rglob("*") if p.is_file())
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    proc = cli("verify", ok=False)
    assert proc.returncode == 1 and "corrupt" in proc.stdout
    np.save(tmp_path / "x.npy", np.ones((1, 4)))
    assert "corrupt" in _error(cli("predict", "m", "--input", str(tmp_path / "x.npy"), ok=False))


def test_predict_reads_npy_json_csv_and_writes_outputs(cli, tmp_path: Path) -> None:
    cli("register", str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "m")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
    (tmp_path / "x.csv").write_text(
        "a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in x.tolist())
    )
    results = []
    for name in ("x.npy", "x.json", "x.csv"):
        out = json.loads(cli("predict", "m", "--input", str(tmp_path / name), "--json").stdout)
        results.append(np.array(out["outputs"]["probabilities"]))
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5)
    cli("predict", "m", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), results[0], rtol=1e-6)
    table = cli("predict", "m", "-i", str(tmp_path / "x.npy")).stdout
    assert "argmax" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "model 'nope' not found"),
        (["show", "m:7"], "no version 7"),
        (["show", "m@prod"], "no alias 'prod'"),
        (["show", "m:x"], "not a positive integer"),
        (["show", "a/b"], "path separator"),
        (["show", "x" * 129], "limit is 128"),
        (["register", "README", "--name", "bad\x01name"], "control characters"),
        (["rollback", "m", "production"], "no earlier position"),
        (["alias", "set", "m", "production", "9"], "no version 9"),
        (["delete", "m"], "which version"),
        (["register", "m.onnx", "--name", "m", "--metric", "acc"], "key=value"),
        (["register", "m.onnx", "--name", "m", "--metric", "acc=high"], "must be a number"),
    ],
)
def test_errors_are_one_line(cli, tmp_path: Path, args: list[str], message: str) -> None:
    make_mlp_onnx(tmp_path / "m.onnx")
    cli("register", str(tmp_path / "m.onnx"), "--name", "m", "--alias", "production")
    args = [str(tmp_path / a) if a.endswith(".onnx") else a for a in args]
    assert message in _error(cli(*args, ok=False))


def test_non_model_files_write_nothing(cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "bad.onnx").write_bytes(b"\x00\x01\x02not protobuf")
    for path in ("notes.txt", "bad.onnx", "missing.onnx"):
        assert "error:" in _error(cli("register", str(tmp_path / path), "--name", "m", ok=False))
    assert json.loads(cli("list", "--json").stdout) == []


def test_predict_bad_input_files(cli, tmp_path: Path) -> None:
    cli("register", str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "m")
    np.save(tmp_path / "wide.npy", np.ones((2, 9)))
    (tmp_path / "x.csv").write_text("1,2,3,oops\n")
    (tmp_path / "x.txt").write_text("1")
    (tmp_path / "x.json").write_text("{not json")
    assert "dimension 1 is 9" in _error(
        cli("predict", "m", "-i", str(tmp_path / "wide.npy"), ok=False)
    )
    assert "non-numeric" in _error(cli("predict", "m", "-i", str(tmp_path / "x.csv"), ok=False))
    assert "use one of .npy" in _error(cli("predict", "m", "-i", str(tmp_path / "x.txt"), ok=False))
    assert "cannot read" in _error(cli("predict", "m", "-i", str(tmp_path / "x.json"), ok=False))
    assert "does not exist" in _error(cli("predict", "m", "-i", str(tmp_path / "no.npy"), ok=False))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://bob:secret@127.0.0.1:1/x", "bob:***@127.0.0.1:1/x"),
        ("not-a-url", "Could not parse"),
    ],
)
def test_unreachable_catalogue_is_one_line(tmp_path: Path, url: str, message: str) -> None:
    env = {**os.environ, "MODELPORT_HOME": str(tmp_path), "MODELPORT_DATABASE_URL": url}
    proc = subprocess.run([sys.executable, "-m", "modelport", "list"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    line = _error(proc)
    assert "cannot open the catalogue" in line and message in line
    assert "secret" not in line


def test_more_bad_input_is_one_line(cli, tmp_path: Path) -> None:
    cli("register", str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "m")
    assert "larger than any version" in _error(cli("show", "m:99999999999999999999", ok=False))
    blocked = tmp_path / "file"
    blocked.write_text("x")
    assert "cannot write" in _error(cli("export", "m", str(blocked / "sub" / "m.onnx"), ok=False))
    (tmp_path / "many").mkdir()
    for i in range(7):
        make_mlp_onnx(tmp_path / "many" / f"m{i}.onnx")
    assert "and 2 more" in _error(cli("register", str(tmp_path / "many"), "--name", "x", ok=False))
    proc = cli("gc", "--grace", "-5", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_piped_tables_write_every_value_in_full(cli, tmp_path: Path) -> None:
    metrics = [f"--metric=accuracy_on_held_out_split_{i}=0.96{i}4" for i in range(8)]
    cli("register", str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "digits", *metrics)
    out = cli("list", "digits").stdout  # stdout is a pipe here, not a terminal
    assert "…" not in out
    for i in range(8):
        assert f"accuracy_on_held_out_split_{i}=0.96{i}4" in out
    assert max(len(line) for line in out.splitlines()) > 140


def test_batch_and_serve_options_come_from_settings(cli, tmp_path: Path) -> None:
    """MODELPORT_BATCH__<OPTION> / MODELPORT_SERVE__<OPTION> set an option's default; a flag
    still wins; a variable naming no option is a one-line error."""
    cli("register", str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "mlp")
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c,d\n1,2,3,4\n1,x,3,4\n5,6,7,8\n")
    base = ["batch", "mlp", "-i", str(rows), "-o", str(tmp_path / "out.parquet"), "--quiet"]
    failed = _error(cli(*base, ok=False, MODELPORT_BATCH__ON_ERROR="fail"))
    assert "non-numeric value 'x'" in failed
    passed = cli(*base, "--on-error", "skip", MODELPORT_BATCH__ON_ERROR="fail")  # the flag wins
    assert "scored 2 rows, 1 bad" in passed.stdout
    wrong = _error(cli("serve", "mlp", ok=False, MODELPORT_SERVE__HTTP_PORTS="8080"))
    assert "MODELPORT_SERVE__HTTP_PORTS names no option of 'modelport serve'" in wrong
    assert "HTTP_PORT" in wrong


def test_serve_listens_where_the_settings_say(tmp_path: Path) -> None:
    import urllib.request

    from tests.rollouts.servers import serve

    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "modelport", "--home", str(home), "register",
                    str(make_mlp_onnx(tmp_path / "m.onnx")), "--name", "mlp"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    server = serve(home, "mlp", ports_by_settings=True)  # ready on MODELPORT_SERVE__HTTP_PORT
    try:
        with urllib.request.urlopen(f"{server.url}/v2/models/mlp/ready") as reply:
            assert reply.status == 200
    finally:
        assert server.stop() == 0
