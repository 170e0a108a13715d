"""An evaluation set stored with a version: the inputs (and labels) that checks run against.

    store(registry, "digits:3", Path("eval.npz"))              # arrays by input name (+ "label")
    store(registry, "digits:3", Path("x.npy"), labels=Path("y.npy"))   # one-input models
    data = stored(registry, registry.resolve("digits@staging"))  # {"input": ..., "label": ...}

Checked against the version's signature when stored, kept as an ``.npz`` attachment (a
content-addressed blob), so a rollout's golden-set check (``rollouts.preflight``) and an edge
bundle's golden requests (``edge.bundle``) find it without being given a file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelport.datafiles import read_numbers
from modelport.errors import InvalidInput
from modelport.registry.attachments import PREFIX, attach, attachment

if TYPE_CHECKING:
    from modelport.registry.records import ModelVersion
    from modelport.registry.registry import Registry
    from modelport.signature import Signature

KIND = "evaluation-set"
TAG = PREFIX + KIND  # the version tag naming the blob
LABEL = "label"


def read(path: Path, signature: Signature, labels: Path | None = None) -> dict[str, np.ndarray]:
    """An evaluation set from a file: an ``.npz`` of arrays named by input (and ``label``), or
    one array (NPY, CSV, Parquet) for a one-input model; ``labels`` a second file of labels."""
    data = read_numbers(Path(path))
    if not isinstance(data, dict):
        if len(signature.inputs) != 1:
            raise InvalidInput(
                f"{Path(path).name} holds one array; the model takes "
                f"{signature.input_names}: give an .npz, one array per input"
            )
        data = {signature.inputs[0].name: np.asarray(data)}
    if labels is not None:
        label_data = read_numbers(Path(labels))
        data[LABEL] = np.asarray(label_data[LABEL] if isinstance(label_data, dict)
                                 and LABEL in label_data else label_data).reshape(-1)  # fmt: skip
    arrays = dict(signature.coerce_inputs({k: v for k, v in data.items() if k != LABEL}))
    rows = {len(a) for a in arrays.values()}
    if LABEL in data:
        arrays[LABEL] = np.asarray(data[LABEL]).reshape(-1)
        rows.add(len(arrays[LABEL]))
    if len(rows) != 1 or 0 in rows:
        raise InvalidInput(f"an evaluation set needs the same number of rows, at least one, in "
                           f"every array; {Path(path).name} has {sorted(rows)}")  # fmt: skip
    return arrays


def store(registry: Registry, ref: str, path: Path, labels: Path | None = None) -> ModelVersion:
    """Check ``path`` (and ``labels``) against the version's signature and attach it."""
    version = registry.resolve(ref)
    arrays = read(path, version.signature, labels)
    with tempfile.TemporaryDirectory(prefix="modelport-evalset-") as tmp:
        packed = Path(tmp) / "evaluation-set.npz"
        np.savez(packed, **arrays)
        return attach(registry, version.ref, KIND, packed)


def stored(registry: Registry, version: ModelVersion) -> dict[str, np.ndarray] | None:
    """The version's evaluation set, or None when it has none."""
    path = attachment(registry, version, KIND)
    if path is None:
        return None
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
