from __future__ import annotations

import numpy as np
import pytest

from modelport.compression import TrainConfig, distill_model
from modelport.errors import InvalidInput

FAST = {"threads": 1, "rounds": 3}


def test_small_student_close_to_teacher(sqlite_registry, tutorial, digits):
    outcome = distill_model(
        tutorial,
        data=digits.x_train,
        labels=digits.y_train,
        hidden=(48,),
        train=TrainConfig(epochs=60, temperature=4.0, seed=0),
        eval_data=digits.x_test,
        eval_labels=digits.y_test,
        max_accuracy_drop=0.02,
        registry=sqlite_registry,
        **FAST,
    )
    v = outcome.version
    assert v is not None, outcome.rejected
    comp = outcome.comparison
    assert comp.child.parameters <= 0.25 * comp.parent.parameters
    assert comp.accuracy_drop <= 0.02
    assert v.transform == "distill" and v.parent == tutorial
    params = v.transform_params
    assert params["student"] == {
        "kind": "mlp",
        "hidden": [48],
        "activation": "relu",
        "softmax": True,
    }
    assert params["temperature"] == 4.0 and params["epochs"] == 60 and params["labelled"] is True
    assert v.signature == sqlite_registry.resolve(tutorial).signature


def test_unlabeled_csv_and_user_module(sqlite_registry, tutorial, digits, tmp_path):
    import torch

    csv = tmp_path / "unlabeled.csv"
    header = ",".join(f"f{i}" for i in range(64))
    np.savetxt(csv, digits.x_train[:400], delimiter=",", header=header, comments="")

    class Student(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(64, 24), torch.nn.Tanh(), torch.nn.Linear(24, 10)
            )

        def forward(self, x):
            return torch.softmax(self.body(x), dim=1)

    outcome = distill_model(
        tutorial,
        data=csv,
        student=Student(),
        train=TrainConfig(epochs=5),
        eval_data=digits.x_test,
        registry=sqlite_registry,
        **FAST,
    )
    params = outcome.version.transform_params
    assert params["student"] == {"kind": "module", "class": Student.__qualname__}
    assert params["rows"] == 400 and params["labelled"] is False and "alpha" not in params
    assert outcome.comparison.agreement > 0.5  # five epochs on 400 rows already track the teacher


def test_parquet_data(sqlite_registry, tutorial, digits, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({f"f{i}": digits.x_train[:200, i] for i in range(64)}), path)
    outcome = distill_model(
        tutorial,
        data=path,
        hidden=(16,),
        train=TrainConfig(epochs=2),
        registry=sqlite_registry,
        **FAST,
    )
    assert outcome.version.transform_params["rows"] == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.arange(5)}, "labels must be 1257"),
        ({"hidden": (0,)}, "hidden sizes must be positive"),
        ({"train": TrainConfig(temperature=0)}, "temperature must be positive"),
        ({"train": TrainConfig(epochs=0)}, "epochs must be at least 1"),
    ],
)
def test_bad_input_registers_nothing(sqlite_registry, tutorial, digits, kwargs, message):
    kwargs = {"data": digits.x_train, "train": TrainConfig(epochs=1), **kwargs}
    with pytest.raises(InvalidInput, match=message):
        distill_model(tutorial, registry=sqlite_registry, **kwargs, **FAST)
    assert len(sqlite_registry.list_versions("digits")) == 1


def test_empty_and_mismatched_files(sqlite_registry, tutorial, tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="is empty"):
        distill_model(tutorial, data=empty, registry=sqlite_registry, **FAST)
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.zeros((10, 5), np.float32))
    with pytest.raises(InvalidInput, match="narrow.npy: input 'input' has shape"):
        distill_model(tutorial, data=narrow, registry=sqlite_registry, **FAST)
    assert len(sqlite_registry.list_versions("digits")) == 1
