import subprocess
import sys

import modelport
import modelport.errors as errors


def test_public_names_are_what_we_meant() -> None:
    assert sorted(modelport.__all__) == sorted([
        "BackendError", "Conflict", "CorruptArtifact", "Forbidden", "InvalidInput",
        "InvalidReference", "MissingDependency", "ModelRef", "ModelVersion", "ModelportError",
        "NotFound", "NotReady", "PayloadTooLarge", "Registry", "Runtime", "RuntimeOptions",
        "Settings", "Signature", "TensorSpec", "Timeout", "Unauthorized", "__version__", "load",
        "register",
    ])  # fmt: skip
    for name in modelport.__all__:
        assert getattr(modelport, name) is not None


def test_import_stays_light() -> None:
    code = (
        "import sys, modelport; "
        "print(sorted(m for m in ('torch','onnxruntime','onnx','sqlalchemy','sklearn','numpy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_error_has_an_http_status() -> None:
    classes = [getattr(errors, n) for n in dir(errors)]
    tree = [c for c in classes if isinstance(c, type) and issubclass(c, errors.ModelportError)]
    assert len(tree) >= 12
    for cls in tree:
        assert 400 <= cls.status < 600
        assert cls.__name__ in errors.__doc__
    assert errors.Forbidden.status == 403 and errors.NotFound.status == 404
    assert str(errors.MissingDependency("torch", "torch")).endswith(
        "pip install 'modelport[torch]'"
    )
    assert str(errors.MissingDependency("onnxruntime", "")).endswith("pip install modelport")


def test_first_line_of_an_error() -> None:
    assert errors.first_line(ValueError("\n  bad shape  \nat line 3")) == "bad shape"
    assert errors.first_line(KeyError()) == "KeyError"
    noisy = RuntimeError("Exception from src/core.cpp:12:\nCheck 'x' failed\nshape mismatch")
    assert errors.first_line(noisy, ("Exception from", "Check '")) == "shape mismatch"
    assert errors.first_line(RuntimeError("Check 'x' failed"), ("Check '",)) == "Check 'x' failed"
