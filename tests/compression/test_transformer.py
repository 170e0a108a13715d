"""The default int8 recipe on a tiny BERT-style encoder built from a config (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.compression import graph as gx
from modelport.compression import quantize_model

FAST = {"threads": 1, "rounds": 2, "batches": (4,)}


@pytest.fixture(scope="module")
def encoder_onnx(tmp_path_factory):
    import torch

    from modelport.importers.torch import from_module

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = torch.nn.Embedding(500, 64)
            layer = torch.nn.TransformerEncoderLayer(
                64, 4, 128, dropout=0.0, activation="gelu", batch_first=True
            )
            self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

        def forward(self, ids):
            return self.encoder(self.tok(ids))

    torch.manual_seed(0)
    ids = torch.randint(0, 500, (4, 16)).numpy()
    root = tmp_path_factory.mktemp("encoder")
    artifact = from_module(Encoder().eval(), root, ids, input_names=["input_ids"])
    return root / artifact.entrypoint, ids


def test_default_int8_keeps_encoder_outputs(sqlite_registry, encoder_onnx, tmp_path):
    from modelport.importers.onnx import from_path

    path, ids = encoder_onnx
    ref = sqlite_registry.add(from_path(path), "encoder").ref
    csv = tmp_path / "ids.csv"  # token ids in a csv file: whole numbers for an int64 input
    np.savetxt(csv, ids, delimiter=",", fmt="%d")
    outcome = quantize_model(
        ref, bits=8, eval_data=csv, max_accuracy_drop=0.01, registry=sqlite_registry, **FAST
    )
    v = outcome.version
    assert v is not None, outcome.rejected
    comp = outcome.comparison
    assert comp.cosine >= 0.99 and comp.agreement is None  # [batch, seq, hidden]: no top-1
    assert comp.guard_drop()[1] == "1 - mean cosine similarity to the parent"
    assert v.transform_params["mode"] == "dynamic" and v.transform_params["per_channel"] is True
    ops = {n.op_type for n in gx.load(sqlite_registry.path(v)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert v.size < comp.parent.size
    # a budget nothing can meet: refused, nothing registered
    refused = quantize_model(
        ref,
        bits=8,
        per_channel=False,
        eval_data=ids,
        max_accuracy_drop=1e-9,
        registry=sqlite_registry,
        **FAST,
    )
    assert refused.version is None and "1 - mean cosine" in refused.rejected
    assert len(sqlite_registry.list_versions("encoder")) == 2
    assert np.isfinite(comp.max_abs_diff)
