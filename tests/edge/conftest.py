from __future__ import annotations

from pathlib import Path

import pytest

from modelport.edge.bundle import BundleInfo, pack_files
from modelport.edge.keys import KeyStore
from tests.edge.models import SIGNATURE, sample, weights, write_mlp


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    keys = KeyStore(tmp_path / "keys")
    keys.generate()
    return keys


def make_bundle(
    store: KeyStore, folder: Path, seed: int = 0, out: str = "b.bundle", **options
) -> BundleInfo:
    """A signed bundle of the test MLP with weights from ``seed``."""
    nan = options.pop("nan", False)
    params = options.pop("params", None) or weights(seed, options.pop("hidden", 8))
    model_dir = folder / f"model-{out}"
    files = write_mlp(model_dir, params, nan=nan)
    options.setdefault("atol", 1e-4)
    return pack_files(
        model_dir,
        files,
        "model.onnx",
        "onnx",
        name="mlp",
        model=f"mlp:{seed}",
        signature=SIGNATURE,
        inputs=sample(),
        store=store,
        output=folder / out,
        **options,
    )
