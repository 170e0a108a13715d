"""Keras models, ``.keras`` files and TensorFlow SavedModels -> ONNX (tf2onnx), TF form kept.

The artifact holds ``model.onnx`` (the entry point, run by ONNX Runtime) and ``saved_model/``, the
same function as a TensorFlow SavedModel with one ``serving_default`` signature whose input and
output names match the ONNX graph. ``convert --to tflite`` uses that folder with TensorFlow's own
converter instead of translating the ONNX graph back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from modelport.errors import BackendError, InvalidInput, MissingDependency, first_line
from modelport.importers import onnx as onnx_importer
from modelport.registry.artifact import Artifact

SAVED_MODEL = "saved_model"
KERAS_SUFFIXES = (".keras", ".h5")


def tensorflow() -> Any:
    """Import TensorFlow quietly, or say which extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with mute_native_stderr():  # absl/oneDNN banners that ignore TF_CPP_MIN_LOG_LEVEL
            import tensorflow as tf
    except ImportError:
        raise MissingDependency("tensorflow", "keras") from None
    tf.get_logger().setLevel(logging.ERROR)
    return tf


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters: Python prints and warnings, and native code writing to fd 2.

    Only used around conversions (never while serving): failures still surface as exceptions."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        with mute_native_stderr():
            yield


@contextlib.contextmanager
def mute_native_stderr() -> Iterator[None]:
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to mute
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def is_keras(obj: Any) -> bool:
    return any(
        cls.__module__.split(".")[0] in ("keras", "tf_keras") and cls.__name__ in ("Model", "Layer")
        for cls in type(obj).__mro__
    )


def is_saved_model(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


def is_keras_path(path: Path) -> bool:
    return path.suffix.lower() in KERAS_SUFFIXES or is_saved_model(path)


def from_keras(
    model: Any,
    folder: Path,
    sample_input: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
) -> Artifact:
    tf = tensorflow()
    shapes = _input_shapes(model, sample_input)
    names = _names(input_names, len(shapes), "input")
    specs = [
        tf.TensorSpec((None, *shape[1:]), dtype, name=name)
        for name, (shape, dtype) in zip(names, shapes, strict=True)
    ]
    probe = model(*[tf.zeros([1, *s.shape[1:]], s.dtype) for s in specs], training=False)
    n_out = len(probe) if isinstance(probe, (tuple, list)) else 1
    outs = _names(output_names, n_out, "output")

    def serve(*args: Any) -> dict[str, Any]:
        result = model(*args, training=False)
        result = result if isinstance(result, (tuple, list)) else [result]
        return dict(zip(outs, result, strict=True))

    function = tf.function(serve, input_signature=specs)
    try:
        with quiet():
            _save(model, function, specs, folder / SAVED_MODEL)
    except Exception as exc:
        raise BackendError(f"TensorFlow could not save the model: {first_line(exc)}") from None
    return _with_onnx(function, specs, folder, opset)


def _save(model: Any, function: Any, specs: list[Any], target: Path) -> None:
    """Keras 3 tracks variables through an ExportArchive (a plain ``tf.Module`` would leave them
    unfrozen for the TFLite converter); Keras 2 (tf_keras) models save directly."""
    tf = tensorflow()
    if type(model).__module__.startswith("keras"):
        import keras

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", function, input_signature=specs)
        archive.write_out(str(target), verbose=False)
        return
    holder = tf.Module()
    holder.model = model
    tf.saved_model.save(holder, str(target), signatures={"serving_default": function})


def from_file(path: Path, folder: Path, opset: int | None = None) -> Artifact:
    """A ``.keras``/``.h5`` file or a SavedModel folder."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    tf = tensorflow()
    if is_saved_model(path):
        try:
            loaded = tf.saved_model.load(str(path))
            signature = loaded.signatures["serving_default"]
        except KeyError:
            raise InvalidInput(f"{path} has no 'serving_default' signature") from None
        except Exception as exc:
            raise InvalidInput(f"{path} is not a valid SavedModel: {first_line(exc)}") from None
        _, kwargs = signature.structured_input_signature
        names = sorted(kwargs)
        specs = [tf.TensorSpec(kwargs[n].shape, kwargs[n].dtype, name=n) for n in names]

        def serve(*args: Any) -> Any:
            return signature(**dict(zip(names, args, strict=True)))

        shutil.copytree(path, folder / SAVED_MODEL)
        return _with_onnx(tf.function(serve, input_signature=specs), specs, folder, opset)
    import keras

    try:
        with quiet():
            model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise InvalidInput(f"{path} is not a valid Keras model file: {first_line(exc)}") from None
    return from_keras(model, folder, opset=opset)


def _with_onnx(function: Any, specs: list[Any], folder: Path, opset: int | None) -> Artifact:
    try:
        import tf2onnx
    except ImportError:
        raise MissingDependency("tf2onnx", "keras") from None
    target = folder / "model.onnx"
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        with quiet():
            tf2onnx.convert.from_function(
                function, input_signature=specs, opset=opset or 17, output_path=str(target)
            )
    except Exception as exc:  # tf2onnx raises many types; report one line
        raise BackendError(f"tf2onnx could not convert the model: {first_line(exc)}") from None
    return onnx_importer.from_path(folder)


def _input_shapes(model: Any, sample_input: Any) -> list[tuple[tuple[int | None, ...], str]]:
    import numpy as np

    if sample_input is not None:
        items = sample_input if isinstance(sample_input, (tuple, list)) else [sample_input]
        arrays = [np.asarray(x) for x in items]
        if any(a.ndim == 0 for a in arrays):
            raise InvalidInput("sample inputs need a batch dimension")
        return [(a.shape, "float32" if a.dtype == np.float64 else a.dtype.name) for a in arrays]
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise InvalidInput(
            "the Keras model has no defined inputs (a subclassed model that was never called); "
            "pass sample_input"
        )
    return [(tuple(t.shape), str(getattr(t.dtype, "name", t.dtype))) for t in inputs]


def _names(given: Sequence[str] | None, n: int, stem: str) -> list[str]:
    names = list(given) if given else [stem] if n == 1 else [f"{stem}_{i}" for i in range(n)]
    if len(names) != n:
        raise InvalidInput(f"the model has {n} {stem}(s); got names {names}")
    return names


def saved_model_of(version_path: Path) -> Path | None:
    """The kept TensorFlow form next to a checked-out ONNX entry point, if there is one."""
    candidate = Path(version_path).parent / SAVED_MODEL
    return candidate if is_saved_model(candidate) else None


def kept_copy_size(files: Sequence[Any]) -> int:
    """Bytes of the kept SavedModel among a version's file entries (``.path``, ``.size``): a copy
    for ``convert --to tflite`` that no runtime loads."""
    prefix = SAVED_MODEL + "/"
    return sum(f.size for f in files if f.path.startswith(prefix))
