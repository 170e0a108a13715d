"""The edge commands in process: keys, bundle, fleet release/devices/deploy/status, errors."""

from __future__ import annotations

from pathlib import Path

from modelport.edge.bundle import read_manifest
from tests.conftest import invoke_cli
from tests.edge.models import weights, write_mlp


def test_keys_bundle_and_a_deployment_from_the_command_line(tmp_path, monkeypatch, capsys):
    home = str(tmp_path / "home")
    write_mlp(tmp_path / "m", weights(1))

    def cli(*args: str) -> tuple[int, str, str]:
        return invoke_cli(monkeypatch, capsys, "--home", home, *args)

    assert cli("register", str(tmp_path / "m"), "--name", "digits", "--alias", "production")[0] == 0
    code, out, _ = cli("keys", "generate")
    assert code == 0 and "root version 1" in out
    code, _, err = cli("keys", "generate")
    assert code == 1 and "already has keys" in err and err.count("\n") == 1
    code, out, _ = cli("keys", "rotate")
    assert code == 0 and "root version 2" in out
    code, out, _ = cli("keys", "list")
    assert out.count("revoked") == 1 and out.count("active") == 1
    bundle = tmp_path / "digits.bundle"
    code, out, _ = cli("bundle", "digits@production", "--output", str(bundle))
    assert code == 0 and "as release 1" in out and read_manifest(bundle)["model"] == "digits:1"
    code, _, err = cli("bundle", "digits@production", "--target", "coreml", "-o", str(bundle))
    assert code == 1 and "is not one of onnx, tflite, openvino" in err
    code, _, err = cli("bundle", "nothing@production", "-o", str(bundle))
    assert code == 1 and err.startswith("error:")

    code, out, _ = cli("fleet", "release", str(bundle))
    assert code == 0 and out.startswith("release 1: digits:1 onnx fp32")
    code, _, err = cli(
        "fleet", "deploy", "digits@production", "--group", "cameras", "--variant", "x86=@1"
    )
    assert code == 1 and "no enrolled device is in group(s) cameras" in err
    from modelport.edge.fleet.store import Fleet
    from modelport.registry import Registry

    with Registry.open(Path(home)) as registry:
        fleet = Fleet(registry)
        fleet.enroll(
            fleet.create_token("t"), {"id": "cam-1", "hardware": "x86", "tags": ["cameras"]}
        )
    code, out, _ = cli(
        "fleet",
        "deploy",
        "digits@production",
        "--group",
        "cameras",
        "--waves",
        "50,100",
        "--wait",
        "1",
        "--variant",
        "x86=onnx",
    )
    assert code == 0 and "deployment 1" in out and "x86: digits:1 onnx fp32 -> release 2" in out
    code, out, _ = cli("fleet", "status")
    assert code == 0 and "running" in out and "cam-1" in out and "pending" in out
    code, out, _ = cli("fleet", "devices")
    assert code == 0 and "cam-1" in out
    assert cli("fleet", "halt", "1")[1].strip() == "deployment 1: halted"
    code, _, err = cli("fleet", "halt", "1")
    assert code == 1 and "is halted; cannot halt it" in err
    assert cli("fleet", "resume", "1")[1].strip() == "deployment 1: running"
    assert cli("fleet", "rollback", "1")[1].strip() == "deployment 1: rolled-back"
    code, _, err = cli("fleet", "status", "9")
    assert code == 1 and "no deployment 9" in err
    code, _, err = cli(
        "fleet",
        "deploy",
        "digits@production",
        "--group",
        "cameras",
        "--waves",
        "50,20",
        "--variant",
        "x86=@1",
    )
    assert code == 1 and "must increase and end at 100" in err
    code, _, err = cli(
        "edge",
        "agent",
        "--server",
        "http://x",
        "--device-id",
        "bad id!",
        "--data-dir",
        str(tmp_path / "d"),
    )
    assert code == 1 and "device id" in err


def test_a_bundle_carries_the_stored_evaluation_set_as_golden_requests(tmp_path, monkeypatch,
                                                                       capsys):  # fmt: skip
    import io
    import tarfile

    import numpy as np

    from modelport.edge.bundle import GOLDEN, GOLDEN_ROWS

    home = str(tmp_path / "home")

    def cli(*args: str) -> tuple[int, str, str]:
        return invoke_cli(monkeypatch, capsys, "--home", home, *args)

    write_mlp(tmp_path / "m", weights(1))
    assert cli("register", str(tmp_path / "m"), "--name", "digits")[0] == 0
    assert cli("keys", "generate")[0] == 0
    x = np.random.default_rng(3).random((300, 4), dtype=np.float32)
    np.save(tmp_path / "eval.npy", x)
    assert cli("eval-set", "digits:1", "--data", str(tmp_path / "eval.npy"))[0] == 0
    bundle = tmp_path / "digits.bundle"
    assert cli("bundle", "digits:1", "--output", str(bundle))[0] == 0
    with tarfile.open(bundle) as tar:
        golden = np.load(io.BytesIO(tar.extractfile(f"targets/{GOLDEN}").read()))
        [name] = [k for k in golden.files if k.startswith("in/")]
        np.testing.assert_array_equal(golden[name], x[:GOLDEN_ROWS])
