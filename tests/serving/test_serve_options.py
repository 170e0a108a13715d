import pytest

from modelport.cli.serve import parse_batching, parse_size
from modelport.errors import InvalidInput, InvalidReference
from modelport.serving.config import BatchConfig, ServeConfig


def test_per_model_batching_overrides_the_default() -> None:
    batching = parse_batching(["digits=32:250", "iris=8"], BatchConfig(4, 900))
    assert batching == {
        "*": BatchConfig(4, 900),
        "digits": BatchConfig(32, 250),
        "iris": BatchConfig(8, 900),
    }
    config = ServeConfig(batching=batching)
    assert config.batch_for("digits") == BatchConfig(32, 250)
    assert config.batch_for("other") == BatchConfig(4, 900)


@pytest.mark.parametrize("spec", ["digits", "digits=", "digits=big", "digits=8:soon"])
def test_bad_batching_specs_say_the_form(spec: str) -> None:
    with pytest.raises(InvalidInput, match="NAME=SIZE"):
        parse_batching([spec], BatchConfig())


def test_batching_spec_checks_values_and_names() -> None:
    with pytest.raises(InvalidInput, match="max_batch_size"):
        parse_batching(["digits=0"], BatchConfig())
    with pytest.raises(InvalidReference):
        parse_batching(["a/b=8"], BatchConfig())
    with pytest.raises(InvalidReference):
        parse_batching(["=8"], BatchConfig())


def test_sizes() -> None:
    assert parse_size("64MiB") == 64 * 1024**2
    assert parse_size("1000") == 1000
    with pytest.raises(InvalidInput):
        parse_size("lots")


@pytest.mark.parametrize("args", [["--http-port", "99999"], ["--grpc-port", "-1"]])
def test_out_of_range_ports_are_usage_errors(args: list[str]) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "modelport", "serve", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "Invalid value" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_shadow_runner_is_a_one_line_error(tmp_path) -> None:
    import subprocess
    import sys

    with pytest.raises(InvalidInput, match="shadow runner 'fork' is not one of process"):
        ServeConfig(shadow_runner="fork")
    proc = subprocess.run([sys.executable, "-m", "modelport", "--home", str(tmp_path), "serve",
                           "--http-port", "18999", "--shadow-runner", "fork"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: shadow runner 'fork' is not one of process, thread, loop"
